import { formatLabels, namespacePid } from '../../agent/src/alerts';
import { namespaceInode } from '../../agent/src/containers';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

test('namespaceInode reads /proc ns links and refuses anything else', () => {
  expect(namespaceInode('mnt:[4026532180]')).toBe(4026532180);
  expect(namespaceInode('pid_for_children:[4026531836]')).toBe(4026531836);
  expect(namespaceInode('mnt:[x]')).toBeUndefined();
  expect(namespaceInode('')).toBeUndefined();
});

test('formatLabels is KubeArmor\'s k=v list, sorted', () => {
  expect(formatLabels({ tier: 'edge', app: 'web' })).toBe('app=web,tier=edge');
  expect(formatLabels({})).toBe('');
});

test('namespacePid takes the innermost NSpid; undefined when the process is gone', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-nspid-'));
  fs.mkdirSync(path.join(root, '42'));
  fs.writeFileSync(path.join(root, '42', 'status'), 'Name:\tsh\nNSpid:\t42\t7\nNSsid:\t1\n');
  expect(namespacePid(42, root)).toBe(7);
  expect(namespacePid(43, root)).toBeUndefined();
});
