/** The bench's workflow bundle: the real release workflow and the naive baseline side by side, and analysis stretches. */
export { releaseWorkflow } from '../src/workflows';
export { naiveReleaseWorkflow } from './naive-workflow';
export { analysisStretchesWorkflow } from './heartbeat-workflow';
