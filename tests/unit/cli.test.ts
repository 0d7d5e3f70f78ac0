import { parseArgs, UsageError } from '../../agent/src/cli';
import { renumberRules } from '../../agent/src/policy/renumber';

describe('parseArgs', () => {
  test('valued options in both forms, flags and positionals', () => {
    expect(parseArgs(['--policies', 'd', '--log-format=json', 'x', '--json'], ['policies', 'log-format'], ['json'])).toEqual({
      options: { policies: 'd', 'log-format': 'json', json: true },
      positional: ['x'],
    });
  });

  test('unknown options and missing values are usage errors naming the option', () => {
    expect(() => parseArgs(['--nope'], [], [])).toThrow(new UsageError('unknown option --nope'));
    expect(() => parseArgs(['--policies'], ['policies'], [])).toThrow('option --policies needs a value');
  });
});

describe('renumberRules', () => {
  test('moves rule ids and their metadata together', () => {
    const set = renumberRules(
      {
        pathRules: [{ ruleId: 1, action: 'Block', operation: 'File', target: { kind: 'path', path: '/a' }, readOnly: false, ownerOnly: false, fromSource: [] }],
        networkRules: [{ ruleId: 2, action: 'Audit', operation: 'Network', protocol: 'udp', fromSource: [] }],
        meta: new Map([
          [1, { ruleId: 1, policyName: 'a', policyType: 'MatchedHostPolicy', severity: 1, tags: [], message: '', action: 'Block', operation: 'File', source: 'f' }],
          [2, { ruleId: 2, policyName: 'b', policyType: 'MatchedHostPolicy', severity: 1, tags: [], message: '', action: 'Audit', operation: 'Network', source: 'f' }],
        ]),
      },
      2 ** 20,
    );
    expect(set.pathRules[0].ruleId).toBe(2 ** 20 + 1);
    expect(set.networkRules[0].ruleId).toBe(2 ** 20 + 2);
    expect(set.meta.get(2 ** 20 + 2)?.policyName).toBe('b');
    expect(set.meta.get(2 ** 20 + 2)?.ruleId).toBe(2 ** 20 + 2);
  });
});
