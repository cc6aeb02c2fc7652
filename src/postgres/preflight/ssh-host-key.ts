// The bastion's host key as a line of the report: `pgcdc check` with ssh.acceptUnknownHostKey
// shows the fingerprint it accepted and the setting that pins it (docs/security.md: check it out
// of band, then pin it), instead of leaving users to find it in `pgcdc run`'s log.
import { normalizeFingerprint, type SshSettings } from '../../tunnel/ssh.ts';
import { ok, warning, type CheckResult } from './result.ts';

/**
 * The `ssh` line, or null when there is nothing to say: no tunnel, no handshake reached, or a
 * pinned key that did not match (the connection line tells that one, with both fingerprints).
 */
export function hostKeyCheck(
  ssh: SshSettings | undefined,
  presented: string | null | undefined,
): CheckResult | null {
  if (!ssh?.enabled || !presented) return null;
  const bastion = `${ssh.host}:${ssh.port}`;
  if (ssh.hostKeyFingerprint) {
    if (normalizeFingerprint(ssh.hostKeyFingerprint) !== presented) return null;
    return ok('ssh', `bastion ${bastion} presented ${presented}, the pinned ssh.hostKeyFingerprint`);
  }
  return warning(
    'ssh',
    `accepted the unverified host key of bastion ${bastion}: ${presented} (ssh.acceptUnknownHostKey=true); ` +
      "compare it with the bastion's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)",
    `pin it with ssh.hostKeyFingerprint: ${presented} (or PGCDC_SSH_HOST_KEY_FINGERPRINT=${presented}) and remove ssh.acceptUnknownHostKey`,
  );
}
