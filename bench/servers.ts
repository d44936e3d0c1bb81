// The bench's servers are the tests' own: one way to start each, search attributes registered the same.
export { startDevServer, startTimeSkipping } from '../test/helpers/temporal-servers';
