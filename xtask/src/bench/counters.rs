//! Counters: veth statistics, TcpExt, status lines.

use super::*;

/// Packet counters of one interface (`/proc/net/dev`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct DevCounters {
    pub(super) rx_packets: u64,
    pub(super) tx_packets: u64,
    pub(super) tx_dropped: u64,
}

/// The counters of both lab ends and the shield's TCP statistics at one moment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Snapshot {
    pub(super) at: Instant,
    pub(super) client: DevCounters,
    pub(super) shield: DevCounters,
    pub(super) syncookies_sent: u64,
}

impl Snapshot {
    pub(super) fn read(lab: &Lab) -> Result<Snapshot> {
        let at = Instant::now();
        let client = dev_counters(&read_net_file(&lab.client, "dev")?, CLIENT_IF)?;
        let shield = dev_counters(&read_net_file(&lab.shield, "dev")?, SHIELD_IF)?;
        let syncookies_sent = tcp_ext(&read_net_file(&lab.shield, "netstat")?, "SyncookiesSent")?;
        Ok(Snapshot { at, client, shield, syncookies_sent })
    }
}

/// Reads `/proc/thread-self/net/<file>` from a thread inside `ns`: the namespace's view, without
/// starting a process (sysfs would show the namespace of whoever mounted it).
pub(super) fn read_net_file(ns: &Netns, file: &str) -> Result<String> {
    let path = format!("/proc/thread-self/net/{file}");
    ns.enter(|| fs::read_to_string(&path))?
        .with_context(|| format!("reading {path} in {}", ns.name()))
}

/// One interface's line of `/proc/net/dev`: `name: rx bytes packets errs drop fifo frame
/// compressed multicast, tx bytes packets errs drop ...`.
pub(super) fn dev_counters(text: &str, ifname: &str) -> Result<DevCounters> {
    let line = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim() == ifname)
        .map(|(_, rest)| rest)
        .with_context(|| format!("no {ifname} in /proc/net/dev"))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad /proc/net/dev line for {ifname}: {line}"))?;
    ensure!(fields.len() >= 12, "short /proc/net/dev line for {ifname}: {line}");
    Ok(DevCounters { rx_packets: fields[1], tx_packets: fields[9], tx_dropped: fields[11] })
}

/// A `TcpExt` counter from `/proc/net/netstat` (a line of names, then a line of values).
pub(super) fn tcp_ext(text: &str, name: &str) -> Result<u64> {
    let mut rows = text.lines().filter_map(|l| l.strip_prefix("TcpExt:"));
    let (names, values) = rows.next().zip(rows.next()).context("no TcpExt in netstat")?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .with_context(|| format!("no TcpExt {name} in netstat"))?
        .1
        .parse()
        .with_context(|| format!("bad TcpExt {name}"))
}

/// The cumulative `tx_synack` of a synshield status line (`status: mode M | rx N (R/s) |
/// tx_synack N (R/s) | ...`); counters that are zero are left out of the line.
pub(super) fn status_tx_synack(line: &str) -> Option<u64> {
    let fields = line.strip_prefix("status: ")?;
    Some(
        fields
            .split(" | ")
            .find_map(|f| f.strip_prefix("tx_synack "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame \
                    compressed multicast|bytes packets errs drop fifo colls carrier compressed\n\
                    \x20   lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
                    client0: 5400558 100007 0 0 0 0 0 0 5400558 100009 0 3 0 0 0 0\n";
        let c = dev_counters(text, "client0").unwrap();
        assert_eq!((c.rx_packets, c.tx_packets, c.tx_dropped), (100_007, 100_009, 3));
        assert!(dev_counters(text, "shield0").is_err());
    }

    #[test]
    fn reads_tcp_ext() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 42 7\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(text, "SyncookiesSent").unwrap(), 42);
        assert_eq!(tcp_ext(text, "SyncookiesRecv").unwrap(), 7);
        assert!(tcp_ext(text, "Nope").is_err());
    }

    #[test]
    fn reads_tx_synack_from_status_lines() {
        let line =
            "status: mode cookies | rx 30 (10/s) | pass_not_ip 20 (5/s) | tx_synack 10 (5/s)";
        assert_eq!(status_tx_synack(line), Some(10));
        assert_eq!(status_tx_synack("status: rx 3 (1/s) | pass_not_ip 3 (1/s)"), Some(0));
        assert_eq!(status_tx_synack("synshield: attached to shield0"), None);
    }
}
