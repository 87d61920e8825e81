#!/bin/sh
# Runs inside the lab image's root file system (chroot) after debootstrap.
# Part of the lab image recipe: a change here rebuilds the image.
set -eu

# The lab's admin account: the control node logs in with the lab's SSH key and uses sudo.
# Its password is set per lab by `kijun lab up`; until then the account has none.
useradd --create-home --shell /bin/bash --groups sudo labadmin
printf 'labadmin ALL=(ALL:ALL) NOPASSWD: ALL\n' > /etc/sudoers.d/90-kijun-lab
chmod 0440 /etc/sudoers.d/90-kijun-lab
visudo -cf /etc/sudoers.d/90-kijun-lab

# Every container gets its own SSH host keys at first boot, never ones baked into the image.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/10-kijun-lab-hostkeys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
systemctl enable ssh.service

# Daemons that only some hosts run are left disabled; the baseline roles enable them where needed.
for unit in postfix.service hostapd.service rsyslog.service chrony.service; do
    systemctl disable "$unit" 2>/dev/null || true
done
# Units that have no meaning in a container.
systemctl mask getty@tty1.service serial-getty@.service systemd-remount-fs.service 2>/dev/null || true

# Each container gets its own machine id at boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
