// matchPatterns globs (KubeArmor passes them to AppArmor, whose globbing
// this follows): `*` matches any characters but `/`, `**` any characters
// including `/`, `?` one character but `/`, `[abc]` / `[a-z]` / `[^a-z]`
// (or `[!a-z]`) one character of (not of) a set, `{a,b}` one of the
// alternatives (not nested), `\x` the character x itself. A pattern is an
// absolute path pattern: it starts with `/`.
//
// Pure. The native fanotify enforcer (native/src/file_enforcer.cc,
// GlobMatch) implements the same syntax without braces: expandBraces()
// hands it one pattern per alternative.

/** Most alternatives a pattern may expand into (each becomes a kernel-side pattern). */
export const MAX_BRACE_EXPANSIONS = 64;

export type GlobToken =
  | { t: 'lit'; s: string }
  | { t: 'star' }
  | { t: 'globstar' }
  | { t: 'one' }
  | { t: 'class'; negate: boolean; ranges: Array<[string, string]> };

/** Why `pattern` is not a valid glob, or undefined. */
export function globProblem(pattern: string): string | undefined {
  if (!pattern.startsWith('/')) return 'must be an absolute path pattern (start with /)';
  const expanded = expandBraces(pattern);
  if (typeof expanded === 'string') return expanded;
  for (const p of expanded) {
    const t = parseGlob(p);
    if (typeof t === 'string') return t;
  }
  return undefined;
}

/**
 * `{a,b}` alternatives expanded into whole patterns, in order; an error
 * message when braces do not balance, nest, or expand past the limit.
 */
export function expandBraces(pattern: string): string[] | string {
  let out: string[] = [''];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === '\\') {
      if (i + 1 >= pattern.length) return 'ends with an unfinished escape (\\)';
      out = out.map((o) => o + pattern.slice(i, i + 2));
      i += 2;
      continue;
    }
    if (c === '}') return `has "}" without "{" at position ${i}`;
    if (c !== '{') {
      out = out.map((o) => o + c);
      i++;
      continue;
    }
    const alts: string[] = [];
    let cur = '';
    let j = i + 1;
    for (; j < pattern.length; j++) {
      const d = pattern[j];
      if (d === '\\' && j + 1 < pattern.length) {
        cur += pattern.slice(j, j + 2);
        j++;
      } else if (d === '{') {
        return `has nested "{" at position ${j} (not supported)`;
      } else if (d === ',') {
        alts.push(cur);
        cur = '';
      } else if (d === '}') {
        break;
      } else {
        cur += d;
      }
    }
    if (j >= pattern.length) return `has "{" without "}" at position ${i}`;
    alts.push(cur);
    if (out.length * alts.length > MAX_BRACE_EXPANSIONS) {
      return `expands into more than ${MAX_BRACE_EXPANSIONS} alternatives`;
    }
    out = out.flatMap((o) => alts.map((a) => o + a));
    i = j + 1;
  }
  return out;
}

/** Tokens of a brace-free pattern, or an error message. */
export function parseGlob(pattern: string): GlobToken[] | string {
  const out: GlobToken[] = [];
  const lit = (s: string) => {
    const last = out[out.length - 1];
    if (last && last.t === 'lit') last.s += s;
    else out.push({ t: 'lit', s });
  };
  const chars = Array.from(pattern); // by code point: `?` is one character, not one UTF-16 unit
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '\\') {
      if (i + 1 >= chars.length) return 'ends with an unfinished escape (\\)';
      lit(chars[++i]);
    } else if (c === '*') {
      if (chars[i + 1] === '*') {
        while (chars[i + 1] === '*') i++;
        if (out[out.length - 1]?.t !== 'globstar') out.push({ t: 'globstar' });
      } else if (out[out.length - 1]?.t !== 'star' && out[out.length - 1]?.t !== 'globstar') {
        out.push({ t: 'star' });
      }
    } else if (c === '?') {
      out.push({ t: 'one' });
    } else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (chars[j] === '!' || chars[j] === '^') {
        negate = true;
        j++;
      }
      const ranges: Array<[string, string]> = [];
      let first = true;
      for (; j < chars.length && (chars[j] !== ']' || first); j++) {
        first = false;
        let lo = chars[j];
        if (lo === '\\') {
          if (j + 1 >= chars.length) return 'ends with an unfinished escape (\\)';
          lo = chars[++j];
        }
        if (lo === '/') return `has "/" inside a character class at position ${i} (a class matches one character of a name)`;
        let hi = lo;
        if (chars[j + 1] === '-' && j + 2 < chars.length && chars[j + 2] !== ']') {
          hi = chars[j + 2];
          if (hi === '\\') {
            if (j + 3 >= chars.length) return 'ends with an unfinished escape (\\)';
            hi = chars[j + 3];
            j++;
          }
          j += 2;
          if (hi.codePointAt(0)! < lo.codePointAt(0)!) return `has an empty range ${lo}-${hi} in a character class`;
        }
        ranges.push([lo, hi]);
      }
      if (j >= chars.length) return `has "[" without "]" at position ${i}`;
      out.push({ t: 'class', negate, ranges });
      i = j;
    } else {
      lit(c);
    }
  }
  return out;
}

function classMatches(tok: Extract<GlobToken, { t: 'class' }>, c: string): boolean {
  const cp = c.codePointAt(0)!;
  const inSet = tok.ranges.some(([lo, hi]) => cp >= lo.codePointAt(0)! && cp <= hi.codePointAt(0)!);
  return tok.negate ? !inSet : inSet;
}

/** Whether `path` matches the tokens (dynamic programming: no exponential backtracking). */
export function matchTokens(tokens: GlobToken[], path: string): boolean {
  const s = Array.from(path);
  // reach[j]: the tokens so far can consume exactly s[0..j)
  let reach = new Array<boolean>(s.length + 1).fill(false);
  reach[0] = true;
  for (const tok of tokens) {
    const next = new Array<boolean>(s.length + 1).fill(false);
    switch (tok.t) {
      case 'lit': {
        const l = Array.from(tok.s);
        for (let j = 0; j + l.length <= s.length; j++) {
          if (reach[j] && l.every((ch, k) => s[j + k] === ch)) next[j + l.length] = true;
        }
        break;
      }
      case 'star':
      case 'globstar': {
        let on = false;
        for (let j = 0; j <= s.length; j++) {
          if (reach[j]) on = true;
          next[j] = on;
          if (tok.t === 'star' && j < s.length && s[j] === '/') on = false;
        }
        break;
      }
      case 'one':
      case 'class':
        for (let j = 0; j < s.length; j++) {
          if (!reach[j] || s[j] === '/') continue;
          if (tok.t === 'one' || classMatches(tok, s[j])) next[j + 1] = true;
        }
        break;
    }
    reach = next;
  }
  return reach[s.length];
}

/** A matcher for a validated pattern (braces included). Throws on an invalid one. */
export function compileGlob(pattern: string): (path: string) => boolean {
  const expanded = expandBraces(pattern);
  if (typeof expanded === 'string') throw new Error(`pattern ${JSON.stringify(pattern)} ${expanded}`);
  const parts = expanded.map((p) => {
    const t = parseGlob(p);
    if (typeof t === 'string') throw new Error(`pattern ${JSON.stringify(pattern)} ${t}`);
    return t;
  });
  return (path) => parts.some((t) => matchTokens(t, path));
}
