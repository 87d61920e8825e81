"""kijun.rsyslog: rsyslog's full configuration (``rsyslogd -N1 -o``) read into modules, inputs,
templates and actions with the ruleset, filter and file attributes rsyslog gives them."""

from __future__ import annotations

from kijun import rsyslog as rs

# rsyslogd 8.2302 -N1 -o for Debian 12's stock configuration (abridged), including the way it
# writes an include.
DEBIAN_STOCK = """\
## full conf created by rsyslog version 8.2302.0 at 2026-11-21 23:27:12 ##

##### BEGIN CONFIG: /etc/rsyslog.conf (put on stack)
module(load="imuxsock") # provides support for local system logging
module(load="imklog")   # provides kernel logging support
#module(load="imtcp")
#input(type="imtcp" port="514")
$FileOwner root
$FileGroup adm
$FileCreateMode 0640
$DirCreateMode 0755
$Umask 0022
$WorkDirectory /var/spool/rsyslog
$IncludeConfig /etc/rsyslog.d/*.conf/etc/rsyslog.d/*.conf
##### BEGIN CONFIG: /etc/rsyslog.d/postfix.conf (put on stack)
$AddUnixListenSocket /var/spool/postfix/dev/log

##### END   CONFIG: /etc/rsyslog.d/postfix.conf

*.*;auth,authpriv.none\t\t-/var/log/syslog
auth,authpriv.*\t\t\t/var/log/auth.log
cron.*\t\t\t\t-/var/log/cron.log
*.emerg\t\t\t\t:omusrmsg:*

##### END   CONFIG: /etc/rsyslog.conf
"""

COLLECTOR = """\
module(load="imtcp")
$AllowedSender TCP, 198.18.10.0/24, 198.18.20.0/24
template(name="kijun_remote_file" type="string"
         string="/var/log/remote/%HOSTNAME:::secpath-replace%/syslog.log")
template(name="lines" type="list") { property(name="msg") constant(value="\\n") }
ruleset(name="kijun_remote") {
    action(type="omfile" dynaFile="kijun_remote_file" fileCreateMode="0640" fileGroup="adm")
}
input(type="imtcp" port="514" ruleset="kijun_remote")
action(type="omfwd" target="loghost" port="514" protocol="tcp"
       queue.type="LinkedList" queue.filename="fwd" queue.saveOnShutdown="on")
"""


def test_stock_configuration() -> None:
    conf = rs.parse(DEBIAN_STOCK)
    assert conf.problems == []
    assert set(conf.modules) == {"imuxsock", "imklog"}
    assert conf.inputs == []
    assert conf.work_directory == "/var/spool/rsyslog"
    files = {a.file: a for a in conf.files()}
    assert list(files) == ["/var/log/syslog", "/var/log/auth.log", "/var/log/cron.log"]
    auth = files["/var/log/auth.log"]
    assert auth.conditions == ("auth,authpriv.*",) and auth.ruleset is None and auth.legacy
    assert conf.file_attributes(auth) == {
        "filecreatemode": "0640", "fileowner": "root", "filegroup": "adm"
    }  # fmt: skip
    assert conf.actions[-1].type == "omusrmsg"


def test_collector_configuration() -> None:
    conf = rs.parse(COLLECTOR)
    assert conf.problems == []
    assert conf.allowed_senders == {"TCP": ["198.18.10.0/24", "198.18.20.0/24"]}
    assert conf.inputs == [{"type": "imtcp", "port": "514", "ruleset": "kijun_remote"}]
    assert conf.templates["kijun_remote_file"]["string"].startswith("/var/log/remote/%HOSTNAME")
    remote, forward = conf.actions
    assert (remote.type, remote.ruleset, remote.params["dynafile"]) == (
        "omfile", "kijun_remote", "kijun_remote_file"
    )  # fmt: skip
    assert conf.file_attributes(remote)["filecreatemode"] == "0640"
    assert (forward.type, forward.ruleset, forward.unconditional) == ("omfwd", None, True)
    assert forward.params["queue.saveonshutdown"] == "on"


def test_rainerscript_file_actions_ignore_legacy_settings() -> None:
    conf = rs.parse(
        '$FileCreateMode 0600\naction(type="omfile" file="/var/log/a")\n*.* /var/log/b\n'
        'module(load="builtin:omfile" fileCreateMode="0640" fileGroup="adm")\n'
    )
    a, b = conf.actions
    assert conf.file_attributes(a) == {
        "filecreatemode": "0640", "fileowner": "root", "filegroup": "adm"
    }  # fmt: skip
    assert conf.file_attributes(b)["filecreatemode"] == "0600"


def test_legacy_forwarding_with_its_queue_settings() -> None:
    conf = rs.parse(
        "$ActionQueueType LinkedList\n$ActionQueueFileName fwd\n$ActionResumeRetryCount -1\n"
        "*.* @@(o)[2001:db8::1]:6514;RSYSLOG_ForwardFormat\n*.* @loghost\n"
    )
    tcp, udp = conf.actions
    assert tcp.params == {
        "target": "2001:db8::1", "port": "6514", "protocol": "tcp", "queue.type": "LinkedList",
        "queue.filename": "fwd", "action.resumeretrycount": "-1",
    }  # fmt: skip
    assert udp.params == {"target": "loghost", "port": "514", "protocol": "udp"}


def test_conditions_of_if_blocks_single_statements_and_ampersand() -> None:
    conf = rs.parse(
        'if $programname == "x" then {\n  action(type="omfwd" target="a" protocol="tcp")\n}\n'
        'if $msg contains "y" then action(type="omfile" file="/var/log/y")\n'
        ':msg, contains, "z"  /var/log/z\n& stop\n'
        'action(type="omfwd" target="b" protocol="tcp")\n'
    )
    a, y, z, stop, b = conf.actions
    assert a.conditions == ('$programname == "x"',) and not a.unconditional
    assert y.conditions == ('$msg contains "y"',)
    assert z.conditions == (':msg, contains, "z"',) and z.file == "/var/log/z"
    assert stop.type == "discard" and stop.conditions[0] == ':msg, contains, "z"'
    assert b.conditions == () and b.unconditional


def test_selector_facilities() -> None:
    assert rs.selector_facilities("auth,authpriv.*") == {"auth": "*", "authpriv": "*"}
    assert rs.selector_facilities("*.*;auth,authpriv.none") == {"*": "*"}
    assert rs.selector_facilities("mail.info;mail.none") == {}
