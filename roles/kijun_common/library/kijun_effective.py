#!/usr/bin/python
# kijun kijun_common role: the module every baseline role uses to make its settings the
# effective ones whatever else sits in the drop-in directories and includes a service reads.
"""Neutralise competing assignments of the keys a role owns, keeping a backup of each file."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kijun_effective
short_description: Neutralise other files' assignments of the settings a role owns
description:
  - A service that reads a directory of drop-ins (journald, sshd, sysctl, chrony, rsyslog,
    modprobe, ...) takes a setting from whichever file it reads last (or, for sshd, first). A
    role that writes its own drop-in does not make its value the effective one while another
    file assigns the same key.
  - This module reads the files O(paths) (globs are expanded and sorted, as the services read
    them), skips the role's own files O(own), and comments out every active line that assigns
    one of O(keys). The line is kept, prefixed with C(# kijun(LABEL\) neutralised:), so that the
    reader sees who changed it and what it said.
  - Before a file is changed it is copied to O(backup_dir)/TIMESTAMP/ORIGINAL-PATH (outside the
    drop-in directory, where no service reads it), and the new content is written atomically
    with the file's owner, group and mode.
  - Check mode reports what would be neutralised without changing anything; with --diff the
    change of each file is shown.
  - Returns C(neutralised), one entry per line (path, line number, key, the original text and
    the backup), which C(kijun apply) lists in its report.
options:
  paths:
    description: Files and globs, in the order the service reads them.
    type: list
    elements: str
    required: true
  own:
    description: The role's own files (or globs), never changed.
    type: list
    elements: str
    default: []
  keys:
    description: The keys the role owns (for O(format=pattern), ignored).
    type: list
    elements: str
    default: []
  format:
    description:
      - C(equals) for C(key = value) lines (journald, pwquality, faillock, sysctl, NetworkManager).
      - C(space) for C(key value) lines (sshd, chrony, login.defs, rsyslog legacy directives,
        modprobe's C(install)/C(options) lines, Postfix's C(-o key=value) with O(pattern)).
      - C(pattern) to neutralise each active line that matches O(pattern).
    type: str
    choices: [equals, space, pattern]
    default: equals
  pattern:
    description: With O(format=pattern), a Python regular expression searched in each line.
    type: str
  remove:
    description:
      - C(line) comments out the whole line that assigns an owned key (or matches O(pattern)).
      - C(match), with O(format=pattern), removes only the text each match covers, for files
        whose lines carry several settings (Postfix master.cf, where a service line and its
        continuation lines hold C(-o name=value) options); a comment line
        C(# kijun(LABEL\) neutralised: MATCH) is put before the line, and a line left blank is
        replaced by that comment. Use it only for files where a comment line between the lines
        of one entry is allowed (master.cf: yes).
    type: str
    choices: [line, match]
    default: line
  section:
    description: With O(format=equals), only assignments inside this C([section]) count.
    type: str
  ignore_case:
    description: Keys compare without regard to case (sshd's keywords do).
    type: bool
    default: false
  comment:
    description: The characters that start a comment line.
    type: str
    default: "#;"
  label:
    description: Who neutralised the line, written into it (the role and the control ids).
    type: str
    required: true
  validate:
    description:
      - A command that checks a file's syntax, C(%s) standing for the file (C(bash -n %s) for
        shell profiles). The new content is checked before it is written; when the file as it
        was passes and the new content does not (a neutralised line was the only statement of a
        shell branch, say), the module fails naming the file and leaves it as it was.
    type: str
  backup_dir:
    description: Where the copies of changed files go.
    type: path
    default: /var/backups/kijun
author: kijun
"""

EXAMPLES = r"""
- name: Ensure no other journald drop-in overrides the retention settings (LG-01)
  kijun_effective:
    paths: [/etc/systemd/journald.conf, /etc/systemd/journald.conf.d/*.conf]
    own: [/etc/systemd/journald.conf.d/50-kijun-retention.conf]
    keys: [Storage, Compress, SystemMaxUse, MaxRetentionSec]
    section: Journal
    label: log_retention LG-01
  notify: Restart systemd-journald
"""

RETURN = r"""
neutralised:
  description: Each line neutralised (or, in check mode, that would be).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /etc/systemd/journald.conf.d/99-local.conf
      line: 2
      key: Storage
      text: Storage=volatile
      backup: /var/backups/kijun/20261207T120000/etc/systemd/journald.conf.d/99-local.conf
"""

import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def expand(patterns):
    """The files the patterns name, each once, in the order given (a glob's matches sorted)."""
    seen = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in matches:
            if os.path.isfile(path) and path not in seen:
                seen.append(path)
    return seen


def key_of(line, fmt, comment):
    """The key a line assigns (None for comments, blank lines and section headers)."""
    text = line.strip()
    if not text or text[0] in comment or text.startswith("["):
        return None
    if fmt == "equals":
        if "=" not in text:
            return None
        return text.split("=", 1)[0].strip()
    return text.split(None, 1)[0]


def competing(lines, params):
    """(index, key) of each active line of a file that assigns an owned key."""
    fmt, comment = params["format"], params["comment"]
    fold = (lambda s: s.lower()) if params["ignore_case"] else (lambda s: s)
    owned = {fold(k) for k in params["keys"]}
    matcher = re.compile(params["pattern"]) if fmt == "pattern" else None
    section = params.get("section")
    current = None
    found = []
    for i, raw in enumerate(lines):
        text = raw.strip()
        if text.startswith("[") and text.endswith("]"):
            current = text[1:-1].strip()
            continue
        if not text or text[0] in comment:
            continue
        if matcher is not None:
            if params.get("remove") == "match":
                found.extend((i, m.group(0).strip()) for m in matcher.finditer(raw))
            else:
                match = matcher.search(raw)
                if match:
                    found.append((i, match.group(0).strip()))
            continue
        if section and current != section:
            continue
        key = key_of(raw, fmt, comment)
        if key is not None and fold(key) in owned:
            found.append((i, key))
    return found


def without_matches(raw, matcher, comment_line):
    """The lines that replace ``raw`` when only the matches are removed: a comment naming them,
    then what is left of the line (nothing if only whitespace is left). Each match goes with
    the blanks before it; the line keeps its indentation (a continuation line stays one)."""
    body = raw.rstrip("\r\n")
    ending = raw[len(body):] or "\n"
    text = body.lstrip()
    indent = body[: len(body) - len(text)]
    spans = [m.span() for m in matcher.finditer(body) if m.end() > m.start()]
    kept, at = [], len(indent)
    for start, end in spans:
        cut = start
        while cut > at and body[cut - 1] in " \t":
            cut -= 1
        kept.append(body[at:cut])
        at = max(at, end)
    kept.append(body[at:])
    rest = indent + "".join(kept).lstrip(" \t").rstrip()
    return [comment_line + ending] + ([rest + ending] if rest.strip() else [])


def write_atomically(path, text):
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".kijun-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def valid(module, command, text):
    """``command`` (``%s`` for the file) accepts ``text``."""
    with tempfile.TemporaryDirectory(prefix="kijun-validate-") as tmp:
        path = os.path.join(tmp, "check")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8", "surrogateescape"))
        rc, _, _ = module.run_command(command % path, use_unsafe_shell=False)
    return rc == 0


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "required": True},
            "own": {"type": "list", "elements": "str", "default": []},
            "keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "format": {"type": "str", "choices": ["equals", "space", "pattern"],
                       "default": "equals"},
            "pattern": {"type": "str"},
            "remove": {"type": "str", "choices": ["line", "match"], "default": "line"},
            "section": {"type": "str"},
            "ignore_case": {"type": "bool", "default": False},
            "comment": {"type": "str", "default": "#;"},
            "label": {"type": "str", "required": True},
            "validate": {"type": "str"},
            "backup_dir": {"type": "path", "default": "/var/backups/kijun"},
        },
        required_if=[("format", "pattern", ["pattern"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["remove"] == "match" and p["format"] != "pattern":
        module.fail_json(msg="kijun_effective: remove=match needs format=pattern")
    if p["format"] != "pattern" and not p["keys"]:
        module.fail_json(msg="kijun_effective: keys is empty: name the settings the role owns")
    own = set(expand(p["own"])) | {os.path.realpath(x) for x in expand(p["own"])}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    neutralised = []
    diffs = []
    for path in expand(p["paths"]):
        if path in own or os.path.realpath(path) in own:
            continue
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                before = f.read()
        except OSError as exc:
            module.fail_json(msg=f"kijun_effective: cannot read {path}: {exc.strerror}")
        lines = before.splitlines(keepends=True)
        found = competing(lines, p)
        if not found:
            continue
        backup = os.path.join(p["backup_dir"], stamp, path.lstrip("/"))
        if p["remove"] == "match":
            matcher = re.compile(p["pattern"])
            replaced = {}
            for i, key in found:
                neutralised.append({"path": path, "line": i + 1, "key": key,
                                    "text": key, "backup": backup})
                replaced.setdefault(i, []).append(key)
            for i in sorted(replaced, reverse=True):
                note = f"# kijun({p['label']}) neutralised: {' '.join(replaced[i])}"
                lines[i:i + 1] = without_matches(lines[i], matcher, note)
        else:
            for i, key in found:
                original = lines[i].rstrip("\r\n")
                neutralised.append({"path": path, "line": i + 1, "key": key,
                                    "text": original.strip(), "backup": backup})
                ending = lines[i][len(original):] or "\n"
                lines[i] = f"# kijun({p['label']}) neutralised: {original.strip()}{ending}"
        after = "".join(lines)
        if p["validate"] and valid(module, p["validate"], before) and not valid(
            module, p["validate"], after
        ):
            module.fail_json(
                msg=f"kijun_effective: {path} would not pass `{p['validate']}` once line "
                f"{', '.join(str(i + 1) for i, _ in found)} is neutralised; left unchanged. "
                "Edit the file by hand so that it no longer sets what the role owns.",
                neutralised=[],
            )
        diffs.append({"before_header": path, "after_header": path,
                      "before": before, "after": after})
        if not module.check_mode:
            os.makedirs(os.path.dirname(backup), mode=0o700, exist_ok=True)
            shutil.copy2(path, backup)
            write_atomically(path, after)
    msg = "; ".join(f"{n['path']}:{n['line']} {n['text']}" for n in neutralised)
    result = {
        "changed": bool(neutralised),
        "neutralised": neutralised,
        "msg": f"neutralised {msg}" if neutralised else "no competing settings",
    }
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
