import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { readStateFile } from '../../src/providers/targets/state-file';

class CorruptState extends Error {}

describe('readStateFile', () => {
  let dir: string;
  beforeEach(async () => void (dir = await mkdtemp(join(tmpdir(), 'tollgate-state-'))));
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const schema = z.object({ schemaVersion: z.literal(1), stable: z.string() });
  const read = (path: string) => readStateFile(path, schema, (message) => new CorruptState(message));

  it('answers undefined while there is no file, and what the file holds once there is', async () => {
    const path = join(dir, 'x.state.json');
    await expect(read(path)).resolves.toBeUndefined();
    await writeFile(path, JSON.stringify({ schemaVersion: 1, stable: '1.0.0' }));
    await expect(read(path)).resolves.toEqual({ schemaVersion: 1, stable: '1.0.0' });
  });

  it('refuses a file that is not JSON, or not of the schema, with the error it is given', async () => {
    const path = join(dir, 'x.state.json');
    await writeFile(path, '{"schemaVersion": 1,');
    await expect(read(path)).rejects.toThrow(
      new CorruptState(`${path} is not JSON: ${jsonError('{"schemaVersion": 1,')}`),
    );
    await writeFile(path, JSON.stringify({ schemaVersion: 2, stable: '1.0.0' }));
    await expect(read(path)).rejects.toThrow(CorruptState);
    await expect(read(path)).rejects.toThrow(new RegExp(`^${path}: `));
  });

  it('passes on any other read error', async () => {
    await expect(read(dir)).rejects.toMatchObject({ code: 'EISDIR' });
  });
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected invalid JSON');
}
