// The workflows this worker hosts; the bundler starts here.
export { releaseWorkflow } from './release';
