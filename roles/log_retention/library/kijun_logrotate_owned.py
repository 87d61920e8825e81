#!/usr/bin/python
# kijun log_retention role: makes the role's logrotate blocks the ones logrotate uses for the
# syslog files (LG-03, LG-04), whatever other files in /etc/logrotate.d name the same logs.
"""Take the role's log files out of every other logrotate block, keeping a backup."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kijun_logrotate_owned
short_description: Take the logs a role rotates out of every other logrotate block
description:
  - logrotate refuses a log named by two blocks: the file read later that names it again is
    skipped as a whole ("duplicate log entry", "found error in file ..., skipping"). A file
    that sorts before the role's own in C(/etc/logrotate.d) and names a syslog file therefore
    makes logrotate skip the role's whole file, and its own (shorter) rotation is the one used.
  - This module reads the files O(paths) (globs expanded and sorted, as logrotate includes
    them; files with one of logrotate's taboo extensions are not read by logrotate and left
    alone), skips the role's own files O(own), and removes every pattern that is one of
    O(logs) from the other blocks' headers. A block left without a pattern is commented out
    as a whole. Each changed line is kept, prefixed with C(# kijun(LABEL\) neutralised:).
  - The new content is checked with C(logrotate -d) before it is installed; a file that would
    not parse is left unchanged and the module fails, so logrotate is never left broken.
  - Before a file is changed it is copied to O(backup_dir)/TIMESTAMP/ORIGINAL-PATH, outside
    every directory logrotate reads. Check mode reports what would change; --diff shows it.
  - A glob pattern (C(/var/log/*.log)) that matches one of O(logs) cannot be narrowed; it is
    reported in C(globs) and left as it is.
options:
  paths:
    description: Files and globs logrotate reads, in its order.
    type: list
    elements: str
    required: true
  own:
    description: The role's own logrotate files, never changed.
    type: list
    elements: str
    default: []
  logs:
    description: The log paths (patterns exactly as the role's own blocks write them).
    type: list
    elements: str
    required: true
  label:
    description: Who neutralised the line, written into it (the role and the control ids).
    type: str
    required: true
  backup_dir:
    description: Where the copies of changed files go.
    type: path
    default: /var/backups/kijun
author: kijun
"""

EXAMPLES = r"""
- name: Ensure no other logrotate file names the syslog files (LG-03, LG-04)
  kijun_logrotate_owned:
    paths: [/etc/logrotate.conf, /etc/logrotate.d/*]
    own: [/etc/logrotate.d/rsyslog]
    logs: [/var/log/syslog, /var/log/auth.log]
    label: log_retention LG-03 LG-04
"""

RETURN = r"""
neutralised:
  description: Each line changed (or, in check mode, that would be).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /etc/logrotate.d/local-syslog
      line: 1
      key: /var/log/syslog
      text: /var/log/syslog
      backup: /var/backups/kijun/20261207T120000/etc/logrotate.d/local-syslog
globs:
  description: Glob patterns of other blocks that match one of the logs, left as they are.
  returned: always
  type: list
  elements: str
"""

import fnmatch  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

# logrotate 3.21's default taboo extensions: files ending so are never read by an include.
TABOO = (
    ",v", ".bak", ".cfsaved", ".disabled", ".dpkg-bak", ".dpkg-del", ".dpkg-dist", ".dpkg-new",
    ".dpkg-old", ".dpkg-tmp", ".rhn-cfg-tmp-*", ".rpmnew", ".rpmorig", ".rpmsave", ".swp",
    ".ucf-dist", ".ucf-new", ".ucf-old", "~",
)
SCRIPTS = ("postrotate", "prerotate", "firstaction", "lastaction", "preremove")
# Directives that may stand outside a block (global options); anything else there is a pattern.
GLOBAL_WORDS = {
    "compress", "nocompress", "delaycompress", "nodelaycompress", "create", "nocreate",
    "copytruncate", "nocopytruncate", "copy", "nocopy", "rotate", "maxage", "minage",
    "hourly", "daily", "weekly", "monthly", "yearly", "size", "minsize", "maxsize",
    "missingok", "nomissingok", "ifempty", "notifempty", "olddir", "noolddir", "createolddir",
    "nocreateolddir", "sharedscripts", "nosharedscripts", "dateext", "nodateext", "dateformat",
    "dateyesterday", "datehourago", "extension", "addextension", "start", "mail", "nomail",
    "mailfirst", "maillast", "su", "shred", "noshred", "shredcycles", "compresscmd",
    "uncompresscmd", "compressext", "compressoptions", "tabooext", "taboopat", "renamecopy",
    "norenamecopy", "allowhardlink", "noallowhardlink", "ignoreduplicates", "include",
}


def expand(patterns):
    seen = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for path in matches:
            if os.path.isfile(path) and path not in seen:
                seen.append(path)
    return seen


def taboo(path):
    name = os.path.basename(path)
    return not name.startswith(".") and any(fnmatch.fnmatchcase(name, "*" + e) for e in TABOO)


def split(text):
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def blocks(lines):
    """Each block as (header line indexes, index of the line with "{", index of "}")."""
    found = []
    pending = []
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if not text or text.startswith("#"):
            i += 1
            continue
        if "{" in text:
            start = i
            script = False
            j = i + 1
            while j < len(lines):
                inner = lines[j].strip()
                if script:
                    script = inner != "endscript"
                elif inner.split(None, 1)[:1] and inner.split(None, 1)[0] in SCRIPTS:
                    script = True
                elif inner.startswith("}"):
                    break
                j += 1
            found.append((pending + [start], start, j))
            pending = []
            i = j + 1
            continue
        if text.split(None, 1)[0] in GLOBAL_WORDS:
            pending = []
        else:
            pending.append(i)
        i += 1
    return found


def neutralise(lines, logs, label):
    """The new lines, the neutralised entries (line, key, text) and the globs that match."""
    owned = set(logs)
    mark = f"# kijun({label}) neutralised: "
    out = list(lines)
    entries = []
    globs = []
    for header, brace, close in blocks(lines):
        patterns = []
        for i in header:
            text = lines[i].split("{", 1)[0] if i == brace else lines[i]
            patterns += [(i, p) for p in split(text)]
        hits = [(i, p) for i, p in patterns if p in owned]
        globs += [
            p for _, p in patterns
            if p not in owned and glob.has_magic(p) and any(fnmatch.fnmatch(o, p) for o in owned)
        ]
        if not hits:
            continue
        if len(hits) == len(patterns):  # nothing left: the whole block goes
            for i in range(header[0], min(close, len(lines) - 1) + 1):
                raw = lines[i]
                if raw.strip() and not raw.strip().startswith("#"):
                    out[i] = mark + raw.strip() + "\n"
            for i, p in hits:
                entries.append((i, p, lines[i].strip()))
            continue
        for i in sorted({i for i, _ in hits}):
            raw = lines[i]
            head, brace_part = (raw.split("{", 1) + [None])[:2] if i == brace else (raw, None)
            keep = [p for j, p in patterns if j == i and p not in owned]
            rebuilt = " ".join(f'"{p}"' if any(c.isspace() for c in p) else p for p in keep)
            if brace_part is not None:
                rebuilt = (rebuilt + " {" if rebuilt else "{") + brace_part.rstrip("\n")
            new = mark + raw.strip() + "\n" + (rebuilt + "\n" if rebuilt.strip() else "")
            out[i] = new
            for j, p in hits:
                if j == i:
                    entries.append((i, p, raw.strip()))
    return out, entries, sorted(set(globs))


def parses(text):
    """logrotate reads the text without a configuration error."""
    with tempfile.TemporaryDirectory(prefix="kijun-logrotate-") as tmp:
        path = os.path.join(tmp, "check")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.chmod(path, 0o644)
        proc = subprocess.run(
            ["logrotate", "-d", "-s", os.path.join(tmp, "state"), path],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )
    errors = [
        re.sub(r"\S*check:\d+", "check", line)
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith("error:") and "stat of" not in line and "No such file" not in line
    ]
    return not errors, errors


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


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "str", "required": True},
            "own": {"type": "list", "elements": "str", "default": []},
            "logs": {"type": "list", "elements": "str", "required": True},
            "label": {"type": "str", "required": True},
            "backup_dir": {"type": "path", "default": "/var/backups/kijun"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["logs"]:
        module.fail_json(msg="kijun_logrotate_owned: logs is empty: name the role's log files")
    own = set(expand(p["own"])) | {os.path.realpath(x) for x in expand(p["own"])}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    neutralised, diffs, globs = [], [], []
    for path in expand(p["paths"]):
        if path in own or os.path.realpath(path) in own or taboo(path):
            continue
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                before = f.read()
        except OSError as exc:
            module.fail_json(msg=f"kijun_logrotate_owned: cannot read {path}: {exc.strerror}")
        lines = before.splitlines(keepends=True)
        new, entries, matching = neutralise(lines, p["logs"], p["label"])
        globs += [f"{path}: {g}" for g in matching]
        if not entries:
            continue
        after = "".join(new)
        _, errors_before = parses(before)
        _, errors = parses(after)
        if len(errors) > len(errors_before):
            module.fail_json(
                msg=f"kijun_logrotate_owned: {path} would not parse once the role's logs are "
                f"taken out of it; left unchanged: {'; '.join(errors)}"
            )
        backup = os.path.join(p["backup_dir"], stamp, path.lstrip("/"))
        for i, key, text in entries:
            neutralised.append(
                {"path": path, "line": i + 1, "key": key, "text": text, "backup": backup}
            )
        diffs.append({"before_header": path, "after_header": path,
                      "before": before, "after": after})
        if not module.check_mode:
            os.makedirs(os.path.dirname(backup), mode=0o700, exist_ok=True)
            shutil.copy2(path, backup)
            write_atomically(path, after)
    msg = "; ".join(f"{n['path']}:{n['line']} {n['key']}" for n in neutralised)
    result = {
        "changed": bool(neutralised),
        "neutralised": neutralised,
        "globs": globs,
        "msg": f"neutralised {msg}" if neutralised else "no other block names the role's logs",
    }
    if globs:
        module.warn("glob patterns of other logrotate blocks match the role's logs and were "
                    "left as they are: " + "; ".join(globs))
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
