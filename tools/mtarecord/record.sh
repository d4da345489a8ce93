#!/bin/bash
# record.sh OUTDIR -- record real MTA logs of stalled message bodies.
#
# A generator run by hand (as root, Debian 12), not part of the tests. It
# builds three network namespaces (sender 198.18.1.2 | router | receiver
# 198.18.3.2-4), runs Debian's own Postfix, Exim 4 and Sendmail in them, and
# makes message bodies stall the way a path-MTU black hole does: the router
# namespace drops forwarded TCP packets larger than $BLACKHOLE_MIN bytes, so
# the SMTP dialogue passes and the body does not. The logs each daemon writes
# are copied to OUTDIR unchanged:
#
#   postfix-outbound.log   Postfix sending (maillog_file via postlogd)
#   exim-outbound.log      Exim sending (its mainlog)
#   sendmail-outbound.log  Sendmail sending (its syslog lines, see below)
#   postfix-inbound.log    the receiving Postfix MX (big.test, ok.test, ...)
#   exim-inbound.log       Exim receiving as a gateway for exim.test
#   sendmail-inbound.log   Sendmail receiving as a gateway for sendmail.test
#   versions.txt           package versions used
#
# Sendmail logs only through syslog(3). Each Sendmail runs in its own mount
# namespace with a tmpfs on /dev whose /dev/log is a socket of a small
# listener here, which writes each line the way a traditional syslogd does
# ("Mmm dd hh:mm:ss HOST tag[pid]: msg"); the host's syslog is never used.
#
# Nothing on the host is configured: postfix is installed with "No
# configuration" (no main.cf, nothing started), exim and sendmail are only
# unpacked into a temporary directory, all rules and sysctls live inside the
# namespaces, and the trap stops every daemon and deletes every namespace,
# /etc/netns entry and the temporary Debian-exim user on every exit path.
set -euo pipefail

OUT=${1:?usage: record.sh OUTDIR}
[ "$(id -u)" = 0 ] || { echo "record.sh: run as root" >&2; exit 1; }
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

BLACKHOLE_MIN=${BLACKHOLE_MIN:-1000}    # drop forwarded packets >= this size
LARGE_BYTES=${LARGE_BYTES:-4000000}     # the mail that stalls
SMALL_BYTES=${SMALL_BYTES:-2000}        # the 2 KB mails
TIMEOUT=${TIMEOUT:-10}                  # sender body/data-block timeout (s)
RTIMEOUT=${RTIMEOUT:-20}                # receiver data timeout (s)

ID=$$
NS_S=tnmta-snd-$ID NS_R=tnmta-rtr-$ID NS_X=tnmta-rcv-$ID
W=$(mktemp -d /tmp/tnmta-rec.XXXXXX); chmod 755 "$W"
CREATED_EXIM_USER=
CREATED_NETNS_DIR=
[ -d /etc/netns ] || CREATED_NETNS_DIR=1
PIDS_TO_KILL=()

log() { printf '%s record.sh: %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
	local rc=$?
	set +e
	log "cleaning up"
	for d in "$W"/pf-*/etc; do
		[ -f "$d/main.cf" ] && postfix -c "$d" stop >/dev/null 2>&1
	done
	for f in "$W"/*/run/*.pid; do
		[ -f "$f" ] && kill "$(head -1 "$f")" 2>/dev/null
	done
	for p in "${PIDS_TO_KILL[@]}"; do kill "$p" 2>/dev/null; done
	sleep 1
	for ns in $NS_S $NS_R $NS_X; do
		if ip netns list | grep -qw "$ns"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
			ip netns delete "$ns"
		fi
		rm -rf "/etc/netns/$ns"
	done
	for p in "${PIDS_TO_KILL[@]}"; do kill -9 "$p" 2>/dev/null; done
	[ -n "$CREATED_NETNS_DIR" ] && rmdir /etc/netns 2>/dev/null
	if [ -n "$CREATED_EXIM_USER" ]; then
		userdel Debian-exim 2>/dev/null; groupdel Debian-exim 2>/dev/null
	fi
	if [ -n "${KEEP:-}" ]; then log "kept $W"; else rm -rf "$W"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- packages
log "installing packages"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s postfix >/dev/null 2>&1; then
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get install -y postfix >/dev/null
fi
apt-get install -y iptables m4 python3 libidn12 libwrap0 liblockfile1 libdb5.3 >/dev/null
mkdir -p "$W/pkgs" "$W/exim-root" "$W/sm-root"
chown _apt "$W/pkgs" 2>/dev/null || true
(cd "$W/pkgs" && apt-get download exim4-daemon-light exim4-base sendmail-bin sendmail-base sendmail-cf >/dev/null 2>&1)
for f in "$W"/pkgs/exim4*.deb; do dpkg -x "$f" "$W/exim-root"; done
for f in "$W"/pkgs/sendmail*.deb; do dpkg -x "$f" "$W/sm-root"; done
EXIM=$W/exim-root/usr/sbin/exim4
SENDMAIL=$W/sm-root/usr/libexec/sendmail/sendmail
MAKEMAP=$W/sm-root/usr/libexec/sendmail/makemap
{
	echo "postfix $(dpkg-query -W -f '${Version}' postfix) (installed package, $(postconf -d -h mail_version))"
	for f in "$W"/pkgs/*.deb; do echo "$(dpkg-deb -f "$f" Package) $(dpkg-deb -f "$f" Version) (apt-get download + dpkg -x)"; done
	echo "iptables $(dpkg-query -W -f '${Version}' iptables)"
	echo "kernel $(uname -r)"
} >"$OUT/versions.txt"

if ! getent passwd Debian-exim >/dev/null; then
	useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin --user-group Debian-exim
	CREATED_EXIM_USER=1
fi

# ---------------------------------------------------------------- network
log "building namespaces $NS_S $NS_R $NS_X"
for ns in $NS_S $NS_R $NS_X; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	mkdir -p "/etc/netns/$ns"
	cat >"/etc/netns/$ns/hosts" <<-EOF
	127.0.0.1	localhost
	198.18.1.2	gw.lab.test gw
	198.18.1.1	rtr-a.lab.test
	198.18.3.1	rtr-b.lab.test
	198.18.3.2	mx.big.test mx.ok.test
	198.18.3.3	mx.exim.test
	198.18.3.4	mx.sendmail.test
	EOF
	# no DNS: a resolver on loopback that is not there fails at once
	echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
done
ip -n "$NS_S" link add eth0 type veth peer name eth0 netns "$NS_R"
ip -n "$NS_R" link add eth1 type veth peer name eth0 netns "$NS_X"
ip -n "$NS_S" addr add 198.18.1.2/24 dev eth0
ip -n "$NS_R" addr add 198.18.1.1/24 dev eth0
ip -n "$NS_R" addr add 198.18.3.1/24 dev eth1
ip -n "$NS_X" addr add 198.18.3.2/24 dev eth0
ip -n "$NS_X" addr add 198.18.3.3/24 dev eth0
ip -n "$NS_X" addr add 198.18.3.4/24 dev eth0
for l in "$NS_S eth0" "$NS_R eth0" "$NS_R eth1" "$NS_X eth0"; do set -- $l; ip -n "$1" link set "$2" up; done
ip -n "$NS_S" route add default via 198.18.1.1
ip -n "$NS_X" route add default via 198.18.3.1
ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS_S" python3 -c "import socket; s=socket.socket(); s.settimeout(3); s.connect_ex((\"198.18.3.2\", 9))"

blackhole() { # on|off
	if [ "$1" = on ]; then
		ip netns exec "$NS_R" iptables -A FORWARD -p tcp -s 198.18.1.0/24 -d 198.18.3.0/24 \
			-m length --length "$BLACKHOLE_MIN:65535" -j DROP
	else
		ip netns exec "$NS_R" iptables -F FORWARD
	fi
	log "black hole $1"
}

# ---------------------------------------------------------------- helpers
cat >"$W/syslogd.py" <<'EOF'
# minimal syslog listener: unix datagram socket -> traditional file format
import os, socket, sys, re
path, out, host = sys.argv[1], sys.argv[2], sys.argv[3]
if os.path.exists(path): os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path); os.chmod(path, 0o666)
f = open(out, "a", buffering=1)
pri = re.compile(rb"^<\d+>")
while True:
    b = s.recv(65536)
    b = pri.sub(b"", b).rstrip(b"\n\0")
    ts, rest = b[:15], b[16:]          # "Mmm dd hh:mm:ss " from syslog(3)
    f.write((ts + b" " + host.encode() + b" " + rest).decode("utf-8", "replace") + "\n")
EOF
cat >"$W/inject.py" <<'EOF'
# inject.py HOST SENDER RCPT SIZE SUBJECT: submit one mail of about SIZE bytes by SMTP
import smtplib, sys, base64, hashlib
host, sender, rcpt, size, subj = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
hdr = "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n" % (sender, rcpt, subj)
lines, n, i = [], len(hdr), 0
while n < size:
    l = base64.b64encode(hashlib.sha512(b"%d" % i).digest())[:72].decode() + "\r\n"
    lines.append(l); n += len(l); i += 1
with smtplib.SMTP(host, 25, local_hostname="submit.lab.test", timeout=60) as c:
    c.sendmail(sender, [rcpt], (hdr + "".join(lines)).encode())
EOF
inject() { # size rcpt subject
	ip netns exec "$NS_S" python3 "$W/inject.py" 127.0.0.1 alice@lab.test "$2" "$1" "$3"
	log "submitted $3 ($1 bytes) to $2"
}
wait_for() { # file regex count timeout
	local i
	for ((i = 0; i < $4; i++)); do
		[ "$(grep -cE "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0
		sleep 1
	done
	log "timed out waiting for $3 x /$2/ in $1"; return 1
}

# ---------------------------------------------------------------- postfix
pf_instance() { # name hostname inet_interfaces extra-main.cf-lines
	local d=$W/pf-$1
	mkdir -p "$d/etc" "$d/queue" "$d/data" "$d/log"
	sed 's/^\(\S\+\s\+\S\+\s\+\S\+\s\+\S\+\s\+\)y /\1n /' /etc/postfix/master.cf >"$d/etc/master.cf"
	cat >"$d/etc/main.cf" <<-EOF
	compatibility_level = 3.6
	queue_directory = $d/queue
	data_directory = $d/data
	maillog_file = $d/log/maillog
	maillog_file_prefixes = $W
	myhostname = $2
	mydomain = ${2#*.}
	myorigin = \$myhostname
	inet_interfaces = $3
	inet_protocols = ipv4
	mydestination =
	local_recipient_maps =
	alias_maps =
	alias_database =
	mynetworks = 127.0.0.0/8
	smtp_dns_support_level = disabled
	smtp_host_lookup = native
	smtpd_banner = \$myhostname ESMTP Postfix (Debian/GNU)
	message_size_limit = 52428800
	biff = no
	smtp_tls_security_level = none
	smtpd_tls_security_level = none
	$4
	EOF
	chown -R postfix "$d/data"
	postfix -c "$d/etc" set-permissions >/dev/null 2>&1 || true
}
pf_start() { ip netns exec "$1" postfix -c "$W/pf-$2/etc" start; }

# ---------------------------------------------------------------- exim
exim_instance() { # name hostname interfaces main-extra routers
	local d=$W/exim-$1
	mkdir -p "$d/spool" "$d/log" "$d/run"
	chown Debian-exim:Debian-exim "$d/spool" "$d/log"
	cat >"$d/exim.conf" <<-EOF
	exim_path = $EXIM
	keep_environment =
	primary_hostname = $2
	qualify_domain = lab.test
	spool_directory = $d/spool
	log_file_path = $d/log/%slog
	pid_file_path = $d/run/exim.pid
	local_interfaces = $3
	daemon_smtp_ports = 25
	never_users = root
	host_lookup = *
	rfc1413_hosts =
	tls_advertise_hosts =
	message_size_limit = 50M
	acl_smtp_rcpt = acl_check_rcpt
	$4
	begin acl
	acl_check_rcpt:
	  accept hosts = 127.0.0.1
	  accept domains = exim.test
	  deny message = relay not permitted
	begin routers
	$5
	begin transports
	remote_smtp:
	  driver = smtp
	  hosts_avoid_tls = *
	  data_timeout = ${TIMEOUT}s
	begin retry
	* * F,1h,1m
	EOF
}
exim_start() { ip netns exec "$1" "$EXIM" -C "$W/exim-$2/exim.conf" -bd -q30s; }

# ---------------------------------------------------------------- sendmail
sm_instance() { # name hostname listen-addr mc-extra mailertable
	local d=$W/sm-$1
	mkdir -p "$d/queue" "$d/run" "$d/dev"
	chmod 700 "$d/queue"
	printf 'hosts files\naliases files\n' >"$d/service.switch"
	printf 'postmaster: root\nMAILER-DAEMON: postmaster\n' >"$d/aliases"
	# IP literals: Sendmail looks "[mx.big.test]" up as AAAA first, and the
	# failing resolver (TRY_AGAIN) makes that a deferral before /etc/hosts helps
	printf '%s\n' "$5" >"$d/mailertable"
	cat >"$d/sendmail.mc" <<-EOF
	divert(-1)
	divert(0)dnl
	include(\`$W/sm-root/usr/share/sendmail/cf/m4/cf.m4')dnl
	VERSIONID(\`tnmta lab $1')dnl
	OSTYPE(\`linux')dnl
	define(\`confDOMAIN_NAME', \`$2')dnl
	define(\`QUEUE_DIR', \`$d/queue')dnl
	define(\`STATUS_FILE', \`$d/statistics')dnl
	define(\`confPID_FILE', \`$d/run/sendmail.pid')dnl
	define(\`ALIAS_FILE', \`$d/aliases')dnl
	define(\`confSERVICE_SWITCH_FILE', \`$d/service.switch')dnl
	define(\`confHOSTS_FILE', \`/etc/hosts')dnl
	define(\`confHELP_FILE', \`')dnl
	define(\`confDONT_PROBE_INTERFACES', \`True')dnl
	define(\`confDONT_BLAME_SENDMAIL', \`TrustStickyBit')dnl
	define(\`confTO_DATABLOCK', \`${TIMEOUT}s')dnl
	define(\`confTO_DATAFINAL', \`${TIMEOUT}s')dnl
	define(\`confDELIVERY_MODE', \`background')dnl
	define(\`confMAX_MESSAGE_SIZE', \`52428800')dnl
	FEATURE(\`nocanonify')dnl
	FEATURE(\`accept_unresolvable_domains')dnl
	FEATURE(\`mailertable', \`hash -o $d/mailertable')dnl
	DAEMON_OPTIONS(\`Family=inet, Name=MTA-v4, Port=smtp, Addr=127.0.0.1')dnl
	DAEMON_OPTIONS(\`Family=inet, Name=MTA-ext, Port=smtp, Addr=$3')dnl
	$4
	MAILER(\`local')dnl
	MAILER(\`smtp')dnl
	EOF
	m4 "$d/sendmail.mc" >"$d/sendmail.cf"
	"$MAKEMAP" -C "$d/sendmail.cf" hash "$d/mailertable" <"$d/mailertable"
}
sm_run() { # ns name hostname sendmail-args...: run sendmail in its own mount+UTS namespace
	local ns=$1 d=$W/sm-$2 h=$3; shift 3
	ip netns exec "$ns" unshare -m -u sh -ec '
		d=$1 sm=$2 h=$3; shift 3
		hostname "$h"
		mount -t tmpfs -o mode=755 tnmta-dev /dev
		mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5
		mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9
		touch /dev/log; mount --bind "$d/log.sock" /dev/log
		exec "$sm" -C "$d/sendmail.cf" -L sm-mta "$@"' sh "$d" "$SENDMAIL" "$h" "$@"
}
sm_start() { # ns name hostname
	local d=$W/sm-$2
	python3 "$W/syslogd.py" "$d/log.sock" "$d/syslog" "${3%%.*}" &
	PIDS_TO_KILL+=($!)
	sleep 0.5
	sm_run "$1" "$2" "$3" -bi >/dev/null 2>&1 || true  # newaliases
	sm_run "$1" "$2" "$3" -bd -q30s
}

# ---------------------------------------------------------------- receivers
log "starting receivers"
pf_instance rcv mx.big.test 198.18.3.2 "
virtual_mailbox_domains = big.test ok.test exim.test sendmail.test
virtual_mailbox_base = $W/pf-rcv/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 0
smtpd_timeout = ${RTIMEOUT}s"
mkdir -p "$W/pf-rcv/mail"; chown 65534:65534 "$W/pf-rcv/mail"
pf_start "$NS_X" rcv

exim_instance rcv mx.exim.test 198.18.3.3 "smtp_receive_timeout = ${RTIMEOUT}s" "
to_mailstore:
  driver = manualroute
  domains = exim.test
  transport = remote_smtp
  route_list = * mx.big.test byname"
exim_start "$NS_X" rcv

sm_instance rcv mx.sendmail.test 198.18.3.4 \
	"define(\`confTO_DATABLOCK', \`${RTIMEOUT}s')dnl
RELAY_DOMAIN(\`sendmail.test')dnl" \
	"sendmail.test	esmtp:[198.18.3.2]"
sm_start "$NS_X" rcv mx.sendmail.test
sleep 2

# ---------------------------------------------------------------- one sender at a time
# phase ON : tiny mail to big.test (every packet fits under the black hole: delivered),
#            2 KB mail to big.test (fits in the socket buffer: stalls at end of data),
#            large mail to big.test (stalls in the body)
# phase OFF: 2 KB to big.test, 2 KB to ok.test, large to big.test, then retry the stalled one
run_sender() { # mta logfile deliver-regex defer-regex flush-cmd...
	local mta=$1 lf=$2 ok=$3 bad=$4; shift 4
	blackhole on
	inject 400 bob@big.test "$mta tiny during black hole"
	inject "$SMALL_BYTES" bob@big.test "$mta small during black hole"
	inject "$LARGE_BYTES" bob@big.test "$mta large during black hole"
	if [ "$mta" = postfix ]; then
		inject "$LARGE_BYTES" carol@exim.test "$mta large during black hole"
		inject "$LARGE_BYTES" dave@sendmail.test "$mta large during black hole"
	fi
	wait_for "$lf" "$bad" 1 $((TIMEOUT + 60)) || true
	sleep $((RTIMEOUT + 10))                # let the receivers time out too
	blackhole off
	inject "$SMALL_BYTES" bob@big.test "$mta small"
	inject "$SMALL_BYTES" erin@ok.test "$mta small"
	inject "$LARGE_BYTES" bob@big.test "$mta large"
	if [ "$mta" = postfix ]; then
		inject "$SMALL_BYTES" carol@exim.test "$mta small"
		inject "$SMALL_BYTES" dave@sendmail.test "$mta small"
	fi
	sleep 5
	log "retrying the queue: $*"
	"$@" || true
	sleep 10
}

log "sender: postfix"
pf_instance snd gw.lab.test loopback-only "
transport_maps = inline:{big.test=smtp:[mx.big.test], ok.test=smtp:[mx.ok.test], exim.test=smtp:[mx.exim.test], sendmail.test=smtp:[mx.sendmail.test]}
smtp_data_xfer_timeout = ${TIMEOUT}s
smtp_data_done_timeout = ${TIMEOUT}s"
pf_start "$NS_S" snd
sleep 1
run_sender postfix "$W/pf-snd/log/maillog" 'status=sent.*ok\.test' 'timed out while sending message body' \
	ip netns exec "$NS_S" postqueue -c "$W/pf-snd/etc" -f
wait_for "$W/pf-snd/log/maillog" 'status=sent' 8 60 || true
postfix -c "$W/pf-snd/etc" stop

log "sender: exim"
exim_instance snd gw.lab.test 127.0.0.1 "" "
to_receiver:
  driver = manualroute
  domains = big.test : ok.test
  transport = remote_smtp
  route_list = big.test mx.big.test byname ; ok.test mx.ok.test byname"
exim_start "$NS_S" snd
sleep 1
run_sender exim "$W/exim-snd/log/mainlog" 'ok\.test' 'timeout' \
	ip netns exec "$NS_S" "$EXIM" -C "$W/exim-snd/exim.conf" -qff
wait_for "$W/exim-snd/log/mainlog" 'Completed' 5 60 || true
kill "$(cat "$W/exim-snd/run/exim.pid")"

log "sender: sendmail"
sm_instance snd gw.lab.test 198.18.1.2 "" \
	"big.test	esmtp:[198.18.3.2]
ok.test	esmtp:[198.18.3.2]"
sm_start "$NS_S" snd gw.lab.test
sleep 2
run_sender sendmail "$W/sm-snd/syslog" 'stat=Sent' 'timeout writing message' \
	sm_run "$NS_S" snd gw.lab.test -q
wait_for "$W/sm-snd/syslog" 'stat=Sent' 5 60 || true
sleep $((RTIMEOUT + 5))

# ---------------------------------------------------------------- collect
cp "$W/pf-snd/log/maillog"   "$OUT/postfix-outbound.log"
cp "$W/pf-rcv/log/maillog"   "$OUT/postfix-inbound.log"
cp "$W/exim-snd/log/mainlog" "$OUT/exim-outbound.log"
cp "$W/exim-rcv/log/mainlog" "$OUT/exim-inbound.log"
cp "$W/sm-snd/syslog"        "$OUT/sendmail-outbound.log"
cp "$W/sm-rcv/syslog"        "$OUT/sendmail-inbound.log"
log "done: $(ls "$OUT" | tr '\n' ' ')"
