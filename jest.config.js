/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['@swc/jest'],
    // @kubernetes/client-node 1.x and the OIDC libraries it loads ship only ES modules, which jest cannot require
    // on Node 20 (Node itself can): compiled to CommonJS like our own code.
    '^.+/node_modules/(@kubernetes/client-node|openid-client|oauth4webapi|jose)/.+\\.js$': [
      '@swc/jest',
      { module: { type: 'commonjs' } },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@kubernetes/client-node|openid-client|oauth4webapi|jose)/)'],
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  testTimeout: 120_000,
  // Each file starts its own Temporal server; two cores fit two at a time.
  maxWorkers: 2,
};
