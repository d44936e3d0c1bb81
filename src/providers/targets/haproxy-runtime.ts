import { stat } from 'node:fs/promises';
import { connect } from 'node:net';

/** The admin socket is missing, unreachable or not at `level admin`: nothing can change until an operator fixes it. */
export class HaproxySocketError extends Error {
  override readonly name = 'HaproxySocketError';
}

/** HAProxy answered a runtime command with an error (unknown backend or server, bad argument…). */
export class HaproxyCommandError extends Error {
  override readonly name = 'HaproxyCommandError';
  constructor(
    readonly command: string,
    readonly answer: string,
  ) {
    super(`HAProxy rejected "${command}": ${answer.trim() || '(empty answer)'}`);
  }
}

export type ServerAdminState = 'ready' | 'drain' | 'maint';

export interface ServerStat {
  name: string;
  /** HAProxy's status column: UP, DOWN, MAINT, DRAIN, "UP 1/2", "no check"… */
  status: string;
  /** Streams currently attached to the server (in-flight requests). */
  currentSessions: number;
  /** host:port the slot points at. */
  addr: string;
}

// Names go into a line-oriented text protocol: anything else could smuggle a second command.
const NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const HOST = /^[0-9a-fA-F.:]{2,45}$/;

/**
 * A client for HAProxy's runtime API (the `stats socket`), one connection per command. Each command has a deadline:
 * a hung HAProxy still accepts connections (the kernel queues them), so without one a step would wait forever.
 */
export class HaproxyRuntime {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 5_000,
  ) {}

  /** Sends one command and returns HAProxy's answer; HAProxy closes the connection after answering. */
  async command(line: string): Promise<string> {
    if (/[\r\n;]/.test(line)) throw new HaproxyCommandError(line, 'one command per call, without ";" or newlines');
    await this.assertSocket();
    return new Promise<string>((resolve, reject) => {
      const socket = connect(this.socketPath);
      let answer = '';
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new HaproxySocketError(
            `no answer from HAProxy admin socket ${this.socketPath} to "${line}" within ${this.timeoutMs} ms ` +
              '(HAProxy hung or overloaded?)',
          ),
        );
      }, this.timeoutMs);
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (answer += chunk));
      socket.on('end', () => {
        clearTimeout(timer);
        resolve(answer);
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(this.socketError(err, line));
      });
      socket.end(`${line}\n`);
    });
  }

  async serverStats(backend: string): Promise<ServerStat[]> {
    checkName(backend);
    const command = `show stat ${backend} 4 -1`;
    const answer = await this.command(command);
    const [header, ...rows] = answer.split('\n').filter((l) => l.trim() !== '');
    if (!header?.startsWith('# ')) throw new HaproxyCommandError(command, answer);
    const columns = header.slice(2).split(',');
    const col = (name: string) => {
      const index = columns.indexOf(name);
      if (index < 0) throw new HaproxyCommandError(command, `no "${name}" column in show stat`);
      return index;
    };
    const [px, sv, status, scur, addr] = ['pxname', 'svname', 'status', 'scur', 'addr'].map(col) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const stats = rows
      .map((row) => row.split(','))
      .filter((cells) => cells[px] === backend && cells[sv] !== 'BACKEND' && cells[sv] !== 'FRONTEND')
      .map((cells) => ({
        name: cells[sv] ?? '',
        status: cells[status] ?? '',
        currentSessions: Number(cells[scur] ?? 0),
        addr: cells[addr] ?? '',
      }));
    // show stat answers an unknown proxy with nothing at all, which must not read as "no servers".
    if (stats.length === 0)
      throw new HaproxyCommandError(command, `backend "${backend}" has no servers or does not exist`);
    return stats;
  }

  async setServerAddr(backend: string, server: string, host: string, port: number): Promise<void> {
    checkName(backend);
    checkName(server);
    if (!HOST.test(host) || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new HaproxyCommandError(`set server ${backend}/${server} addr`, `bad address ${host}:${port}`);
    }
    const command = `set server ${backend}/${server} addr ${host} port ${port}`;
    const answer = await this.command(command);
    // Success is a sentence ("IP changed from…", "no need to change the addr, port changed…"), not silence.
    if (!/changed|no need to change/i.test(answer)) throw this.commandError(command, answer);
  }

  async setServerState(backend: string, server: string, state: ServerAdminState): Promise<void> {
    checkName(backend);
    checkName(server);
    const command = `set server ${backend}/${server} state ${state}`;
    const answer = await this.command(command);
    if (answer.trim() !== '') throw this.commandError(command, answer);
  }

  private commandError(command: string, answer: string): Error {
    if (/permission denied/i.test(answer)) {
      return new HaproxySocketError(
        `HAProxy socket ${this.socketPath} is not an admin socket ("${command}" was refused): ` +
          'declare it with "stats socket <path> mode 600 level admin"',
      );
    }
    return new HaproxyCommandError(command, answer);
  }

  private async assertSocket(): Promise<void> {
    try {
      const info = await stat(this.socketPath);
      if (!info.isSocket()) throw new HaproxySocketError(`${this.socketPath} exists but is not a socket`);
    } catch (err) {
      if (err instanceof HaproxySocketError) throw err;
      throw this.socketError(err as NodeJS.ErrnoException);
    }
  }

  private socketError(err: NodeJS.ErrnoException, command?: string): HaproxySocketError {
    const hint = 'is HAProxy running with "stats socket <path> mode 600 level admin" in its global section?';
    switch (err.code) {
      case 'ENOENT':
        return new HaproxySocketError(`HAProxy admin socket ${this.socketPath} does not exist: ${hint}`);
      case 'ECONNREFUSED':
        return new HaproxySocketError(`nothing listens on HAProxy admin socket ${this.socketPath}: ${hint}`);
      case 'EAGAIN':
        // A stopped or hung HAProxy stops accepting: queued connections fill the listen backlog, then connect fails.
        return new HaproxySocketError(
          `HAProxy admin socket ${this.socketPath} is not accepting connections` +
            `${command ? `; "${command}" not sent` : ''} (backlog full: HAProxy hung or overloaded?)`,
        );
      case 'EACCES':
        return new HaproxySocketError(`no permission to use HAProxy admin socket ${this.socketPath}`);
      default:
        return new HaproxySocketError(
          `cannot use HAProxy admin socket ${this.socketPath}${command ? ` for "${command}"` : ''}: ${err.message}`,
        );
    }
  }
}

function checkName(name: string): void {
  if (!NAME.test(name)) throw new HaproxyCommandError(name, 'names are letters, digits, "_", ".", ":" or "-"');
}
