// Java and Maven for the JVM servers of the local stack (Kafka, Apicurio Registry).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { aptInstall, haveCommand, run, StackError } from './process.ts';

const MIN_JAVA = 17;

function javaMajor(): number | undefined {
  const r = spawnSync('java', ['-version'], { encoding: 'utf8' });
  const m = /version "(\d+)(?:\.(\d+))?/.exec(`${r.stderr}${r.stdout}`);
  if (!m) return undefined;
  const major = Number(m[1]);
  return major === 1 ? Number(m[2]) : major;
}

let checked: Promise<void> | undefined;

/** Java >= 17 and Maven on PATH (Debian packages installed if missing). Checked once per process. */
export function ensureJavaAndMaven(server: string, logFile: string): Promise<void> {
  checked ??= (async () => {
    const missing: string[] = [];
    if ((javaMajor() ?? 0) < MIN_JAVA) missing.push('openjdk-17-jre-headless');
    if (!haveCommand('mvn')) missing.push('maven');
    if (missing.length > 0) await aptInstall(server, missing, logFile);
    const major = javaMajor();
    if ((major ?? 0) < MIN_JAVA) {
      throw new StackError(server, `needs Java >= ${MIN_JAVA} on PATH, found ${major ?? 'none'}`, logFile);
    }
  })();
  const result = checked;
  result.catch(() => (checked = undefined));
  return result;
}

/**
 * Runs a Maven goal that fills `target` (a directory under .cache), at most once: the result is
 * kept if `stamp` matches what was recorded, otherwise resolved again into a fresh directory.
 */
export async function mavenCache(
  server: string,
  target: string,
  stamp: string,
  logFile: string,
  goal: (outDir: string) => string[],
): Promise<void> {
  const stampFile = path.join(target, '.pgcdc-complete');
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp) return;
  await ensureJavaAndMaven(server, logFile);
  process.stderr.write(`stack: ${server}: resolving ${path.basename(target)} with Maven (first run only)\n`);
  const tmp = `${target}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    await run(server, 'mvn', ['-q', '-B', '-U', '-Dstyle.color=never', ...goal(tmp)], { logFile, cwd: tmp });
    // Leftovers: Maven's pom-less marker directory (run in `tmp`, so an old marker never makes an
    // unpack skip) and the pax headers plexus-archiver extracts from tarballs as a folder.
    for (const junk of ['${project.basedir}', 'PaxHeaders.X']) {
      fs.rmSync(path.join(tmp, junk), { recursive: true, force: true });
    }
    fs.writeFileSync(path.join(tmp, '.pgcdc-complete'), stamp);
    fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(tmp, target);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** JVM options shared by our servers: small heap, and a marker naming the state directory. */
export function jvmOptions(marker: string, heap = '512m'): string[] {
  return [
    `-Xmx${heap}`,
    '-Xms64m',
    '-XX:+UseSerialGC',
    '-Djava.awt.headless=true',
    `-Dpgcdc.stack.dir=${marker}`,
  ];
}

/**
 * A log4j2 configuration that sends everything at INFO and above to stdout (the server's log
 * file), with `quieter` loggers raised to the level given (e.g. { 'state.change.logger': 'WARN' }).
 */
export function log4jStdout(writtenBy: string, quieter: Record<string, string> = {}): string {
  return [
    `# Written by ${writtenBy}. Everything goes to stdout, which is the server's log file.`,
    'status = warn',
    'appender.out.type = Console',
    'appender.out.name = STDOUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.out.ref = STDOUT',
    ...Object.entries(quieter).flatMap(([name, level], i) => [
      `logger.l${i}.name = ${name}`,
      `logger.l${i}.level = ${level}`,
    ]),
    '',
  ].join('\n');
}
