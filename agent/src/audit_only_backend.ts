// The `audit-only` backend: nothing is refused; the monitor's events are
// matched against the rules in userspace and every match becomes an alert.
import { AUDIT_ONLY_SUPPORT, ApplyResult, EnforcementBackend } from './backend';
import { AuditMatcher } from './audit_matcher';
import { capabilityErrors } from './policy/posture';
import type { CompiledPolicySet } from './policy/types';

export class AuditOnlyBackend implements EnforcementBackend {
  readonly name = 'audit-only' as const;
  readonly support = AUDIT_ONLY_SUPPORT;
  private current = new AuditMatcher({ pathRules: [], networkRules: [], meta: new Map() });

  apply(set: CompiledPolicySet): ApplyResult {
    this.current = new AuditMatcher(set);
    return { errors: capabilityErrors(set, this.name), rules: set.pathRules.length + set.networkRules.length };
  }

  matcher(): AuditMatcher {
    return this.current;
  }

  close(): void {
    this.current = new AuditMatcher({ pathRules: [], networkRules: [], meta: new Map() });
  }
}
