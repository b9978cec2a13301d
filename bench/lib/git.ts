import { execFileSync } from 'node:child_process';

const git = (...args: string[]) => execFileSync('git', args, { cwd: import.meta.dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();

/** The checkout's short commit id; undefined outside a git checkout. */
export function gitSha(): string | undefined {
  try {
    return git('rev-parse', '--short', 'HEAD');
  } catch {
    return undefined;
  }
}

/** Whether what is measured (src/, bench/ less its outputs, the package files) differs from the commit. */
export function gitDirty(): boolean {
  try {
    return git('status', '--porcelain', '--untracked-files=no', '--', ':(top)src', ':(top)bench', ':(top)package.json', ':(top)package-lock.json', ':(top,exclude)bench/baseline.json').length > 0;
  } catch {
    return false;
  }
}
