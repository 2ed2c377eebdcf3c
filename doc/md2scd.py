#!/usr/bin/env python3
"""Turn a Markdown document into an scdoc manual page.

    md2scd.py INPUT.md OUTPUT.scd NAME SECTION [SEE-ALSO...]

Built for proto/PROTOCOL.md, so that portd-protocol(7) is made from the one
specification instead of a second copy. It knows the subset that file uses:
ATX headings (#, ##, ###), paragraphs, bulleted (* or -) and numbered lists
with indented continuations and one level of nesting, pipe tables, fenced code
blocks, and inline `code`, **bold** and *emphasis*. Anything else (links,
HTML, block quotes, deeper headings) stops the build with the line number,
so that a change to the source cannot silently garble the page.

The first-level heading becomes the NAME line; text before the first
second-level heading becomes DESCRIPTION; second- and third-level headings
become scdoc sections and subsections.
"""
import re
import sys


class Error(Exception):
    pass


def escape(text):
    """Escape what scdoc would read as markup."""
    return re.sub(r'([\\*_])', r'\\\1', text)


INLINE = re.compile(r'`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*')


def inline(text, lineno):
    """Markdown inline markup to scdoc: code and strong to bold, emphasis to underline."""
    out = []
    pos = 0
    for m in INLINE.finditer(text):
        out.append(plain(text[pos:m.start()], lineno))
        code, strong, em = m.groups()
        if code is not None:
            out.append('*' + escape(code) + '*')
        elif strong is not None:
            out.append('*' + escape(strong) + '*')
        else:
            out.append('_' + escape(em) + '_')
        pos = m.end()
    out.append(plain(text[pos:], lineno))
    return ''.join(out)


def plain(text, lineno):
    if re.search(r'\]\(|<[a-zA-Z/]|`|\*\*', text):
        raise Error(f'line {lineno}: markup this converter does not know: {text.strip()!r}')
    return escape(text)


def guard(line):
    """A paragraph line must not start like an scdoc list, table or comment."""
    if re.match(r'[-.|:;\[]', line):
        return '\\' + line
    return line


def convert_table(rows, lineno):
    cells = [[c.strip() for c in r.strip().strip('|').split('|')] for r in rows]
    if len(cells) < 2 or not all(re.fullmatch(r':?-+:?', c) for c in cells[1]):
        raise Error(f'line {lineno}: a table needs a header row and an alignment row')
    aligns = []
    for c in cells[1]:
        aligns.append('-' if c.startswith(':') and c.endswith(':') else ']' if c.endswith(':') else '[')
    # The last column holds the prose: let it take the rest of the line.
    if aligns[-1] == '[':
        aligns[-1] = '<'
    out = []
    for i, row in enumerate([cells[0]] + cells[2:]):
        if len(row) != len(aligns):
            raise Error(f'line {lineno}: table row {i + 1} has {len(row)} cells, not {len(aligns)}')
        for j, cell in enumerate(row):
            if i > 0:
                text = inline(cell, lineno)
            else:
                text = '*' + escape(cell.replace('`', '')) + '*' if cell else ''
            lead = ('[' if i == 0 else '|') if j == 0 else ':'
            out.append(f'{lead}{aligns[j]} {text}'.rstrip())
    return out


LIST_ITEM = re.compile(r'( *)([*-]|\d+\.) +(.*)')


def convert_list(lines, i, out):
    """One list from line i on; returns the index of the first line after it."""
    n = len(lines)
    base = len(LIST_ITEM.match(lines[i]).group(1))
    top = None      # '-' or '.': the marker of the outer list
    number = 0      # the count of a nested list of the other kind
    while i < n:
        m = LIST_ITEM.match(lines[i].rstrip('\n'))
        if not m:
            break
        indent = len(m.group(1)) - base
        if indent not in (0, 2, 3, 4):
            raise Error(f'line {i + 1}: list nesting this converter does not know')
        depth = 0 if indent == 0 else 1
        mark = '.' if m.group(2)[0].isdigit() else '-'
        text = [m.group(3)]
        start = i + 1
        i += 1
        while i < n and lines[i].strip() and not LIST_ITEM.match(lines[i]) and lines[i].startswith('  '):
            text.append(lines[i].strip())
            i += 1
        body = inline(' '.join(text), start)
        if depth == 0:
            top, number = mark, 0
            out.append(mark + ' ' + body)
        elif mark == top:
            out.append('\t' + mark + ' ' + body)
        else:
            # scdoc gives a nested list its parent's kind: write the markers out.
            number += 1
            out += ['', '\t' + (f'{number}. ' if mark == '.' else '- ') + body]
        # A paragraph indented under an item: keep it indented, after the list.
        if i + 1 < n and not lines[i].strip() and lines[i + 1].startswith('  ') \
                and not LIST_ITEM.match(lines[i + 1]):
            para = []
            i += 1
            start = i + 1
            while i < n and lines[i].startswith('  ') and not LIST_ITEM.match(lines[i]):
                para.append(lines[i].strip())
                i += 1
            out += ['', '\t' + guard(inline(' '.join(para), start)), '']
    return i


def convert(lines, name, section, see_also):
    out = [f'{name}({section})', '']
    i = 0
    n = len(lines)
    described = False

    def blank():
        if out[-1] != '':
            out.append('')

    while i < n:
        line = lines[i].rstrip('\n')
        lineno = i + 1
        if not line.strip():
            i += 1
            continue
        if line.startswith('```'):
            blank()
            out.append('```')
            i += 1
            while i < n and not lines[i].startswith('```'):
                out.append(lines[i].rstrip('\n').replace('\\', '\\\\'))
                i += 1
            if i == n:
                raise Error(f'line {lineno}: code block never closed')
            out.append('```')
            out.append('')
            i += 1
            continue
        m = re.match(r'(#+) +(.*)', line)
        if m:
            level, title = len(m.group(1)), m.group(2).strip()
            blank()
            if level == 1:
                if described:
                    raise Error(f'line {lineno}: a second first-level heading')
                summary = inline(title[0].lower() + title[1:], lineno)
                out += ['# NAME', '', f'{name} - {summary}', '', '# DESCRIPTION', '']
                described = True
            elif level > 3:
                raise Error(f'line {lineno}: headings deeper than ### are not supported')
            elif not described:
                raise Error(f'line {lineno}: no first-level heading before it')
            else:
                out += ['#' * (level - 1) + ' ' + inline(title, lineno), '']
            i += 1
            continue
        if not described:
            raise Error(f'line {lineno}: text before the first heading')
        if line.startswith('|'):
            rows = []
            while i < n and lines[i].startswith('|'):
                rows.append(lines[i].rstrip('\n'))
                i += 1
            blank()
            out += convert_table(rows, lineno)
            out.append('')
            continue
        if re.match(r' *>|<', line):
            raise Error(f'line {lineno}: block quotes and HTML are not supported')
        m = LIST_ITEM.match(line)
        if m:
            blank()
            i = convert_list(lines, i, out)
            out.append('')
            continue
        if line.startswith(' '):
            raise Error(f'line {lineno}: indented text outside a list')
        para = []
        while i < n and lines[i].strip() and not re.match(r'#|\||```| *([*-]|\d+\.) ', lines[i]):
            para.append(lines[i].strip())
            i += 1
        blank()
        out.append(guard(inline(' '.join(para), lineno)))
        out.append('')
    if not described:
        raise Error('no first-level heading')
    if see_also:
        blank()
        out += ['# SEE ALSO', '', ', '.join(f'*{p.split("(")[0]}*({p.split("(")[1]}' for p in see_also), '']
    while out[-1] == '':
        out.pop()
    return '\n'.join(out) + '\n'


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 2
    src, dst, name, section = argv[1:5]
    with open(src, encoding='utf-8') as f:
        lines = f.readlines()
    try:
        text = convert(lines, name, section, argv[5:])
    except Error as e:
        sys.stderr.write(f'md2scd: {src}: {e}\n')
        return 1
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
