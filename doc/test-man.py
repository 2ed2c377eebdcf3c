#!/usr/bin/env python3
"""Check the generated man pages against what they document.

    test-man.py PAGE...   (env: PORTD_BIN, PORTCTL_BIN, PORTD_HEADER, PROTOCOL_MD)

Every page must format with groff without a warning (-ww). Then:
  portd.8         names every option and $VARIABLE of `portd --help`;
  portctl.1       has a subsection for every command of `portctl --help`, names
                  every option of it and of each `portctl help COMMAND`, and
                  every exit status it lists;
  libportd.3      names every function, struct, struct field, enum constant and
                  macro of portd.h;
  portd-protocol.7  holds every word of PROTOCOL.md, in order.
"""
import os
import re
import shutil
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print('FAIL: ' + msg)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def roff_text(path):
    """The text of a roff page: requests' arguments kept, escapes dropped."""
    with open(path, encoding='utf-8') as f:
        src = f.read()
    lines = []
    for line in src.splitlines():
        if line.startswith('.') or line.startswith("'"):
            m = re.match(r"[.'](SH|SS|TH)\s+(.*)", line)
            if not m:
                continue
            line = m.group(2)
        lines.append(line)
    text = '\n'.join(lines)
    text = re.sub(r"\\[hvwl]'[^']*'", '', text)
    text = re.sub(r'\\f(\(..|\[[^]]*\]|.)', '', text)
    text = re.sub(r'\\\(aq', "'", text)
    text = re.sub(r'\\\((..)', ' ', text)
    text = re.sub(r'\\\[[^]]*\]', ' ', text)
    text = text.replace('\\-', '-').replace('\\&', '').replace('\\e', '\\').replace('\\c', '')
    text = text.replace('\\ ', ' ').replace('\\{', '').replace('\\}', '')
    return text


def mentions(text, word):
    return re.search(r'(?<![\w-])' + re.escape(word) + r'(?![\w-])', text) is not None


def options_in(help_text):
    """--long and -s options of a help text."""
    opts = set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', help_text))
    opts.update(re.findall(r'^\s+(-[a-zA-Z])[,\s]', help_text, re.M))
    return sorted(opts)


def check_groff(page):
    r = run(['groff', '-k', '-man', '-Tutf8', '-ww', '-z', page])
    if r.returncode != 0 or r.stderr.strip():
        fail(f'{os.path.basename(page)}: groff -ww: {r.stderr.strip() or "exit " + str(r.returncode)}')


def check_options(name, text, help_text, source):
    for opt in options_in(help_text):
        if not mentions(text, opt):
            fail(f'{name}: option {opt} ({source}) is not documented')
    for var in sorted(set(re.findall(r'\$([A-Z][A-Z0-9_]{2,})', help_text))):
        if not mentions(text, var):
            fail(f'{name}: ${var} ({source}) is not documented')


def check_portd(page, text):
    r = run([os.environ['PORTD_BIN'], '--help'])
    check_options('portd.8', text, r.stdout, 'portd --help')


def check_portctl(page, text):
    portctl = os.environ['PORTCTL_BIN']
    top = run([portctl, '--help']).stdout
    check_options('portctl.1', text, top, 'portctl --help')
    block = re.search(r'^Commands:\n(.*?)\n\n', top, re.S | re.M)
    if not block:
        fail('portctl --help has no "Commands:" list')
        return
    commands = re.findall(r'^  ([a-z][a-z-]*)\b', block.group(1), re.M)
    if len(commands) < 2:
        fail(f'portctl --help lists too few commands: {commands}')
    with open(page, encoding='utf-8') as f:
        roff = f.read()
    subsections = set(re.findall(r'^\.SS\s+"?([^"\n]+?)"?$', roff, re.M))
    for cmd in commands:
        if cmd not in subsections:
            fail(f'portctl.1: command {cmd} has no subsection of its own')
        if cmd == 'help':
            continue
        r = run([portctl, 'help', cmd])
        if r.returncode != 0:
            fail(f'portctl help {cmd}: exit {r.returncode}: {r.stderr.strip()}')
            continue
        check_options('portctl.1', text, r.stdout, f'portctl help {cmd}')
    status = re.search(r'^Exit status:\n(.*)', top, re.S | re.M)
    section = re.search(r'EXIT STATUS(.*?)(\n[A-Z][A-Z ]+\n|$)', text, re.S)
    if not status or not section:
        fail('no exit status list in portctl --help or in portctl.1')
        return
    for code in re.findall(r'^\s+(\d+)\s', status.group(1), re.M):
        if not mentions(section.group(1), code):
            fail(f'portctl.1: exit status {code} is not under EXIT STATUS')


def check_libportd(page, text):
    with open(os.environ['PORTD_HEADER'], encoding='utf-8') as f:
        header = f.read()
    code = re.sub(r'/\*.*?\*/', ' ', header, flags=re.S)
    code = re.sub(r'//[^\n]*', ' ', code)
    names = set(re.findall(r'\b(portd_\w+)\s*\(', code))
    names |= {'struct ' + s for s in re.findall(r'\bstruct\s+(portd\w*)\s*\{', code)}
    names |= set(re.findall(r'^\s*(PORTD_\w+)\s*=', code, re.M))
    names |= set(re.findall(r'^#define\s+(PORTD_\w+)', code, re.M)) - {'PORTD_H'}
    for body in re.findall(r'\bstruct\s+portd\w*\s*\{(.*?)\n\};', code, re.S):
        for decl in re.sub(r'\{|\}', ';', body).split(';'):
            m = re.search(r'(\w+)(\[[^]]*\])?\s*$', decl.strip())
            if m and decl.strip():
                names.add(m.group(1))
    if len([n for n in names if n.startswith('portd_')]) < 10:
        fail(f'found too few functions in {os.environ["PORTD_HEADER"]}: the parser is broken')
    flat = re.sub(r'\s+', ' ', text)
    for n in sorted(names):
        if not mentions(flat, n):
            fail(f'libportd.3: {n} (portd.h) is not documented')


def words(text):
    return re.findall(r'[a-z0-9]+', text.lower())


def check_protocol(page, text):
    with open(os.environ['PROTOCOL_MD'], encoding='utf-8') as f:
        md = f.read()
    md = re.sub(r'^\|[-:| ]+\|$', '', md, flags=re.M)  # table alignment rows
    want = words(md)
    have = words(text)
    j = 0
    for k, w in enumerate(want):
        while j < len(have) and have[j] != w:
            j += 1
        if j == len(have):
            context = ' '.join(want[max(0, k - 8):k + 1])
            fail(f'portd-protocol.7: PROTOCOL.md text missing or out of order near: ...{context}')
            return
        j += 1


CHECKS = {
    'portd.8': check_portd,
    'portctl.1': check_portctl,
    'libportd.3': check_libportd,
    'portd-protocol.7': check_protocol,
}


def main(pages):
    if not shutil.which('groff'):
        print('groff not found (Debian: groff-base): skipping')
        return 77
    seen = set()
    for page in pages:
        name = os.path.basename(page)
        if os.path.getsize(page) == 0:
            fail(f'{name} is empty')
            continue
        check_groff(page)
        if name in CHECKS:
            CHECKS[name](page, roff_text(page))
            seen.add(name)
    for name in sorted(set(CHECKS) - seen):
        fail(f'{name} was not given to the test')
    print(f'{len(pages)} pages checked, {len(failures)} failures')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
