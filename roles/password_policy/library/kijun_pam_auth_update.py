#!/usr/bin/python
# kijun password_policy role (PW-01, PW-03, PW-05, PW-06, PW-07): build Debian's PAM stack
# with pam-auth-update in a scratch copy, check it, and only then install it.
"""Enable pam-auth-update profiles through a checked scratch copy of the PAM stack."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kijun_pam_auth_update
short_description: Enable pam-auth-update profiles, checking the new PAM stack before installing it
description:
  - Copies C(/etc/pam.d/common-*), pam-auth-update's state (C(/var/lib/pam)) and the profiles
    (C(/usr/share/pam-configs)) into a scratch directory and runs
    C(pam-auth-update --root SCRATCH --package --enable PROFILES) there, with a scratch debconf
    database, so the machine is untouched while the stack is built.
  - pam-auth-update keeps local edits of module arguments; the module then removes the arguments
    listed in O(remove_arguments), resets the arguments of the modules in O(reset_arguments) to
    those of their profiles, and sets pam_unix's password hash to O(unix_hash).
  - The new stack is checked (every line parses, every module exists, every jump stays inside the
    stack, the O(expect) sequences are present in order, no removed argument is left) and only
    then installed, together with pam-auth-update's state, so that later package upgrades keep it.
  - Check mode reports (and with --diff shows) what would change without changing anything.
options:
  enable:
    description: pam-auth-update profiles (file names in /usr/share/pam-configs) to enable.
    type: list
    elements: str
    required: true
  remove_arguments:
    description: module file name -> arguments removed from every line of that module.
    type: dict
    default: {}
  reset_arguments:
    description: modules whose arguments are reset to the arguments of their profile's line.
    type: list
    elements: str
    default: []
  unix_hash:
    description: hash method argument of pam_unix.so in common-password.
    type: str
    choices: [yescrypt, sha512]
  expect:
    description: >-
      file type (auth, account, password, session) -> list of "module [argument]" items that
      must appear in this order in common-<type>.
    type: dict
    default: {}
author: kijun
"""

EXAMPLES = r"""
- name: Enable the faillock and pwhistory profiles
  kijun_pam_auth_update:
    enable: [unix, pwquality, kijun-faillock, kijun-faillock-notify, kijun-pwhistory]
    remove_arguments: {pam_unix.so: [nullok]}
    reset_arguments: [pam_faillock.so, pam_pwhistory.so, pam_pwquality.so]
    unix_hash: yescrypt
    expect:
      auth: [pam_faillock.so preauth, pam_unix.so, pam_faillock.so authfail]
"""

RETURN = r"""
files:
  description: the files that were (or in check mode would be) replaced
  type: list
  returned: always
"""

import difflib  # noqa: E402
import glob  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

TYPES = ("auth", "account", "password", "session", "session-noninteractive")
PAM_DIR = "/etc/pam.d"
STATE_DIR = "/var/lib/pam"
PROFILE_DIR = "/usr/share/pam-configs"
HASHES = ("md5", "bigcrypt", "sha256", "sha512", "blowfish", "gost_yescrypt", "yescrypt")
KEYWORDS = ("required", "requisite", "sufficient", "optional", "include", "substack")
ACTIONS = ("ignore", "bad", "die", "ok", "done", "reset")
LINE_RE = re.compile(r"^(\w+)(\s+)(\[[^\]]*\]|\S+)(\s+)(\S+)(.*)$")


def parse_line(line):
    """(type, control, module, args) of a PAM line, or None for comments and blank lines."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    match = LINE_RE.match(text)
    if not match:
        return ("", "", "", [])
    return (match.group(1), match.group(3), match.group(5), match.group(6).split())


def control_key(control):
    """A control with jump counts and 'end' removed, so profile and rendered lines compare."""
    return re.sub(r"=(\d+|end)", "=", control)


def profile_lines(path):
    """{(type, control key, module): args} of a pam-auth-update profile."""
    lines = {}
    field = None
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            header = re.match(r"^(\S+):\s*(.*)$", raw)
            if header and not raw[0].isspace():
                field = header.group(1)
                continue
            if field is None or not raw.strip():
                continue
            base = field.removesuffix("-Initial").lower()
            if base not in ("auth", "account", "password", "session"):
                continue
            parts = raw.split()
            if len(parts) < 2:
                continue
            lines.setdefault((base, control_key(parts[0]), parts[1]), parts[2:])
    return lines


def set_args(line, args):
    match = LINE_RE.match(line.rstrip("\n"))
    head = "".join(match.group(i) for i in range(1, 6))
    return head + (" " + " ".join(args) if args else " ") + "\n"


def normalise(text, kind, params, profiles):
    """Apply the module's argument rules to one rendered common-<kind> file."""
    out = []
    base = kind.replace("-noninteractive", "")
    for line in text.splitlines(keepends=True):
        parsed = parse_line(line)
        if parsed is None or not parsed[2]:
            out.append(line)
            continue
        control, module, args = parsed[1:]
        new = list(args)
        if module in params["reset_arguments"]:
            stock = profiles.get((base, control_key(control), module))
            if stock is not None:
                new = list(stock)
        removed = params["remove_arguments"].get(module, [])
        new = [a for a in new if a not in removed]
        if module == "pam_unix.so" and base == "password" and params["unix_hash"]:
            new = [a for a in new if a not in HASHES] + [params["unix_hash"]]
        out.append(line if new == args else set_args(line, new))
    return "".join(out)


def module_dirs():
    """The directories PAM loads modules from (Debian: the multiarch security directories)."""
    return glob.glob("/usr/lib/*/security") + glob.glob("/lib/*/security")


def check(kind, text, params, dirs):
    """Problems of one rendered file (an empty list when it may be installed)."""
    problems = []
    base = kind.replace("-noninteractive", "")
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        parsed = parse_line(line)
        if parsed is None:
            continue
        type_, control, module, args = parsed
        where = f"common-{kind} line {number}"
        if type_ != base:
            problems.append(f"{where}: expected a '{base}' line: {line.strip()!r}")
            continue
        if control.startswith("["):
            for pair in control[1:-1].split():
                value = pair.partition("=")[2]
                if not (value in ACTIONS or value.isdigit()):
                    problems.append(f"{where}: bad control {control!r}")
        elif control not in KEYWORDS:
            problems.append(f"{where}: bad control {control!r}")
        path = module if module.startswith("/") else None
        if path is None and not any(os.path.exists(os.path.join(d, module)) for d in dirs):
            problems.append(f"{where}: no such PAM module {module}")
        if path is not None and not os.path.exists(path):
            problems.append(f"{where}: no such PAM module {module}")
        for arg in args:
            if arg in params["remove_arguments"].get(module, []):
                problems.append(f"{where}: argument {arg} must not be used with {module}")
        entries.append((control, module, args))
    for index, (control, _module, _args) in enumerate(entries):
        for jump in re.findall(r"=(\d+)", control):
            if index + int(jump) + 1 >= len(entries):
                problems.append(f"common-{kind}: a jump of {jump} leaves the stack")
    if not entries:
        problems.append(f"common-{kind}: no module lines")
    wanted = params["expect"].get(kind, [])
    position = 0
    for item in wanted:
        module, _sep, arg = item.partition(" ")
        while position < len(entries) and not (
            entries[position][1] == module and (not arg or arg in entries[position][2])
        ):
            position += 1
        if position == len(entries):
            problems.append(f"common-{kind}: {item} missing or out of order (expected {wanted})")
            break
        position += 1
    return problems


def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def render(module, scratch, enable):
    for sub in ("etc/pam.d", "var/lib/pam", "usr/share/pam-configs", "debconf"):
        os.makedirs(os.path.join(scratch, sub))
    for kind in TYPES:
        source = os.path.join(PAM_DIR, f"common-{kind}")
        if os.path.exists(source):
            shutil.copy(source, os.path.join(scratch, "etc/pam.d"))
    if os.path.isdir(STATE_DIR):
        for name in os.listdir(STATE_DIR):
            shutil.copy(os.path.join(STATE_DIR, name), os.path.join(scratch, "var/lib/pam"))
    for name in os.listdir(PROFILE_DIR):
        shutil.copy(os.path.join(PROFILE_DIR, name), os.path.join(scratch, "usr/share/pam-configs"))
    env = {
        "DEBIAN_FRONTEND": "noninteractive",
        # a scratch debconf database: pam-auth-update records its choice there, not in the host's
        "DEBCONF_DB_REPLACE": "File{" + os.path.join(scratch, "debconf", "config.dat") + "}",
    }
    rc, out, err = module.run_command(
        ["pam-auth-update", "--root", scratch, "--package", "--enable", *enable],
        environ_update=env,
    )
    if rc != 0 or "Local modifications" in out + err:
        module.fail_json(
            msg="pam-auth-update could not build the PAM stack; /etc/pam.d was left unchanged. "
            "If /etc/pam.d/common-* holds lines that no profile in /usr/share/pam-configs "
            "provides, move them into a profile (or review them and run pam-auth-update --force).",
            rc=rc,
            stdout=out,
            stderr=err[-2000:],
        )


def main():
    module = AnsibleModule(
        argument_spec={
            "enable": {"type": "list", "elements": "str", "required": True},
            "remove_arguments": {"type": "dict", "default": {}},
            "reset_arguments": {"type": "list", "elements": "str", "default": []},
            "unix_hash": {"type": "str", "choices": ["yescrypt", "sha512"]},
            "expect": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    missing = [p for p in params["enable"] if not os.path.exists(os.path.join(PROFILE_DIR, p))]
    if missing and not module.check_mode:
        module.fail_json(msg=f"no such pam-auth-update profile(s) in {PROFILE_DIR}: {missing}")
    enable = [p for p in params["enable"] if p not in missing]
    profiles = {}
    for name in enable:
        profiles.update(profile_lines(os.path.join(PROFILE_DIR, name)))

    scratch = tempfile.mkdtemp(prefix="kijun-pam-")
    try:
        render(module, os.path.join(scratch, "root"), enable)
        root = os.path.join(scratch, "root")
        dirs = module_dirs()
        wanted = {}
        problems = []
        for kind in TYPES:
            text = read(os.path.join(root, "etc/pam.d", f"common-{kind}"))
            if text is None:
                continue
            text = normalise(text, kind, params, profiles)
            problems += check(kind, text, params, dirs)
            wanted[os.path.join(PAM_DIR, f"common-{kind}")] = text
        for name in sorted(os.listdir(os.path.join(root, "var/lib/pam"))):
            wanted[os.path.join(STATE_DIR, name)] = read(os.path.join(root, "var/lib/pam", name))
        if problems and not (module.check_mode and missing):
            module.fail_json(
                msg="the new PAM stack failed its checks; nothing was installed",
                problems=problems,
            )
        changed = {path: text for path, text in wanted.items() if read(path) != text}
        diff = [
            {
                "before_header": path,
                "after_header": path,
                "before": read(path) or "",
                "after": text,
            }
            for path, text in changed.items()
            if path.startswith(PAM_DIR)
        ]
        if changed and not module.check_mode:
            os.makedirs(STATE_DIR, exist_ok=True)
            # pam-auth-update's state first, the live stack last: an interrupted run leaves the
            # old stack in place.
            for path in sorted(changed, key=lambda p: p.startswith(PAM_DIR)):
                staged = os.path.join(scratch, "staged")
                with open(staged, "w", encoding="utf-8") as handle:
                    handle.write(changed[path])
                os.chmod(staged, 0o644)
                module.atomic_move(staged, path)
        summary = "".join(
            "".join(
                difflib.unified_diff(
                    d["before"].splitlines(True), d["after"].splitlines(True), d["before_header"]
                )
            )
            for d in diff
        )
        module.exit_json(
            changed=bool(changed) or bool(missing),
            files=sorted(changed),
            diff=diff,
            summary=summary,
            missing_profiles=missing,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
