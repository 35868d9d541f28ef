//! The TLS section of `cargo xtask bench`: what TLS costs on each leg, against plaintext in the
//! same run.
//!
//! One Kafka broker with two listeners, an `SSL` one (certificate from the test PKI, IP SANs)
//! and a plaintext one, so that every setup below talks to the same broker and the same data.
//! One gateway with three routes, which differ only in their legs:
//!
//! | setup | client leg | broker leg |
//! |---|---|---|
//! | gateway, plaintext | plaintext | plaintext listener |
//! | gateway, TLS client leg | TLS (the route's `security.ssl`) | plaintext listener |
//! | gateway, TLS both legs | TLS | the `SSL` listener (`bootstrapServers[].ssl`) |
//!
//! and, for reference, the Java clients straight to the plaintext and to the `SSL` listener
//! (what TLS costs Kafka itself). Each setup runs produce (`acks=1`) and consume throughput;
//! the setups take turns, forwards then backwards (as D G G D elsewhere), each such pair of
//! repetitions starting one setup further, so that drift of the machine favours none. Around each gateway run
//! the gateway's CPU time (utime+stime) and `switchyard_bytes_total` are sampled, as in the rest
//! of the bench (only one route carries traffic at a time), giving CPU ms per MB per setup. The
//! ratios compare each gateway setup with the plaintext gateway route, and direct TLS with
//! direct plaintext.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use switchyard_testkit::{free_port_block, java, ClusterSpec, GatewayProcess, KafkaCluster, ListenerTls, TestPki};

use super::report::{Cost, RunRecord};
use super::system::{cpu_seconds, metric_sum, scrape_metrics, vm_kib, CpuSample};
use super::{median, tools, Plan, Side, BROKER_LISTEN_BACKLOG, PARTITIONS};
use crate::step;

const TOPIC: &str = "bench-tls";
const PRODUCE: &str = "produce acks=1";
const CONSUME: &str = "consume";

/// One way of reaching the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    DirectPlaintext,
    DirectTls,
    GatewayPlaintext,
    GatewayTlsClient,
    GatewayTlsBoth,
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::DirectPlaintext,
        Setup::DirectTls,
        Setup::GatewayPlaintext,
        Setup::GatewayTlsClient,
        Setup::GatewayTlsBoth,
    ];

    fn label(self) -> &'static str {
        match self {
            Setup::DirectPlaintext => "direct, plaintext",
            Setup::DirectTls => "direct, TLS",
            Setup::GatewayPlaintext => "gateway, plaintext both legs",
            Setup::GatewayTlsClient => "gateway, TLS client leg, plaintext broker leg",
            Setup::GatewayTlsBoth => "gateway, TLS client leg, TLS broker leg",
        }
    }

    fn side(self) -> Side {
        match self {
            Setup::DirectPlaintext | Setup::DirectTls => Side::Direct,
            _ => Side::Gateway,
        }
    }

    fn client_tls(self) -> bool {
        matches!(self, Setup::DirectTls | Setup::GatewayTlsClient | Setup::GatewayTlsBoth)
    }

    /// The setup whose figures this one's are divided by.
    fn baseline(self) -> Setup {
        match self.side() {
            Side::Direct => Setup::DirectPlaintext,
            Side::Gateway => Setup::GatewayPlaintext,
        }
    }
}

/// The order of repetition `rep`: pairs of repetitions run the setups forwards then backwards
/// (as D G G D elsewhere: a steady drift favours none), each pair rotated one further.
fn order(rep: usize) -> Vec<Setup> {
    let mut setups = Setup::ALL.to_vec();
    setups.rotate_left((rep / 2) % Setup::ALL.len());
    if rep % 2 == 1 {
        setups.reverse();
    }
    setups
}

/// One setup under one workload.
#[derive(Debug, Clone, Serialize)]
pub struct TlsRow {
    pub setup: Setup,
    pub label: String,
    pub workload: String,
    /// Every run, in the order run: `ProducerPerformance`'s MiB/s, or `ConsumerPerformance`'s
    /// fetch MiB/s.
    pub mib_s: Vec<f64>,
    pub mib_s_median: f64,
    /// This row's median over the plaintext row's (the plaintext gateway route for gateway rows,
    /// the plaintext listener for direct rows), same workload.
    pub mib_s_ratio: f64,
    /// Gateway rows only.
    pub gateway_cost: Option<Cost>,
    /// CPU ms per MB over the plaintext gateway route's, same workload.
    pub cpu_ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct TlsReport {
    pub brokers: usize,
    /// Setup × workload, produce first.
    pub rows: Vec<TlsRow>,
    /// The gateway's peak RSS (VmHWM) after every TLS run.
    pub gateway_peak_rss_kib: u64,
    /// Runs that failed (the section carries on without their figures).
    pub failures: Vec<String>,
    pub runs: Vec<RunRecord>,
}

/// The gateway with its three routes.
struct Gateway {
    process: GatewayProcess,
    admin: SocketAddr,
    routes: [(Setup, SocketAddr); 3],
}

impl Gateway {
    fn start(binary: &Path, cluster: &KafkaCluster, pki: &TestPki) -> Result<Gateway> {
        let identity = pki.server("bench-gateway", &["127.0.0.1", "localhost"])?;
        let ids: Vec<i32> = cluster.brokers().iter().map(|(id, _)| *id).collect();
        let (first, last) = (ids.iter().copied().min().unwrap_or(1), ids.iter().copied().max().unwrap_or(1));
        let route = |setup| (setup, SocketAddr::from(([127, 0, 0, 1], free_port_block((last - first + 2) as u16))));
        let routes = [route(Setup::GatewayPlaintext), route(Setup::GatewayTlsClient), route(Setup::GatewayTlsBoth)];
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port_block(1)));
        let pem = |path: &Path| format!("{{type: PEM, location: \"{}\"}}", path.display());
        let mut yaml = format!(
            "streamingDomains:\n  - name: bench-kafka\n    type: kafka\n    kafkaCluster:\n      name: bench-cluster\n      \
             bootstrapServers:\n        - id: plaintext\n          endpoint: \"{}\"\n        - id: tls\n          \
             endpoint: \"{}\"\n          ssl:\n            truststore: {}\n      nodeIdRanges:\n        \
             - {{name: brokers, start: {first}, end: {last}}}\nroutes:\n",
            cluster.internal_bootstrap(),
            cluster.bootstrap(),
            pem(pki.ca_pem()),
        );
        for (setup, endpoint) in &routes {
            let (name, listener) = match setup {
                Setup::GatewayPlaintext => ("plaintext", "plaintext"),
                Setup::GatewayTlsClient => ("tls-client-leg", "plaintext"),
                _ => ("tls-both-legs", "tls"),
            };
            let _ = writeln!(
                yaml,
                "  - name: {name}\n    endpoint: \"{endpoint}\"\n    streamingDomain: {{name: bench-kafka, bootstrapServerId: {listener}}}"
            );
            if setup.client_tls() {
                let _ = writeln!(yaml, "    security:\n      ssl:\n        keystore: {}", pem(&identity.combined_pem));
            }
        }
        let _ = writeln!(yaml, "admin:\n  address: {admin}");
        let wait_for: Vec<SocketAddr> = routes.iter().map(|(_, a)| *a).chain([admin]).collect();
        let process = GatewayProcess::start(binary, &yaml, &wait_for)?;
        Ok(Gateway { process, admin, routes })
    }

    fn endpoint(&self, setup: Setup) -> Option<SocketAddr> {
        self.routes.iter().find(|(s, _)| *s == setup).map(|(_, a)| *a)
    }

    /// Bytes proxied (both directions) and requests forwarded so far, over every route.
    fn traffic(&self) -> Result<(f64, f64)> {
        let page = scrape_metrics(self.admin)?;
        Ok((metric_sum(&page, "switchyard_bytes_total"), metric_sum(&page, "switchyard_requests_total")))
    }
}

struct Runner {
    cluster_plain: String,
    cluster_tls: String,
    gateway: Gateway,
    tls_props: Vec<(String, String)>,
    costs: Vec<((Setup, &'static str), Cost)>,
    runs: Vec<RunRecord>,
    failures: Vec<String>,
}

impl Runner {
    /// Notes a failed run: its first line goes into the report, the gateway's log to the console.
    fn fail(&mut self, setup: Setup, workload: &str, error: anyhow::Error) {
        let cause = error.root_cause().to_string();
        let first = cause.lines().next().unwrap_or_default();
        println!("    {workload} [{}] FAILED: {error:#}", setup.label());
        println!("    gateway log:\n{}", self.gateway.process.log_tail());
        self.failures.push(format!("{workload} [{}]: {first}", setup.label()));
    }

    fn bootstrap(&self, setup: Setup) -> String {
        match setup {
            Setup::DirectPlaintext => self.cluster_plain.clone(),
            Setup::DirectTls => self.cluster_tls.clone(),
            gateway => self.gateway.endpoint(gateway).map(|a| a.to_string()).unwrap_or_default(),
        }
    }

    fn props(&self, setup: Setup) -> &[(String, String)] {
        if setup.client_tls() {
            &self.tls_props
        } else {
            &[]
        }
    }

    /// Runs `work` against `setup`; through the gateway, charges its CPU time and bytes to
    /// `(setup, workload)` (unless `None`: warm-up). Returns MiB/s.
    fn run(
        &mut self,
        setup: Setup,
        workload: Option<&'static str>,
        work: impl FnOnce(&str, &[(String, String)]) -> Result<(f64, serde_json::Value)>,
    ) -> Result<f64> {
        let bootstrap = self.bootstrap(setup);
        let machine_before = CpuSample::take();
        let pid = self.gateway.process.pid();
        let before = (cpu_seconds(pid)?, self.gateway.traffic()?);
        let (mib_s, result) = work(&bootstrap, self.props(setup)).with_context(|| setup.label())?;
        let after = (cpu_seconds(pid)?, self.gateway.traffic()?);
        let foreign = CpuSample::take().foreign_share_since(&machine_before);
        let cost = (setup.side() == Side::Gateway).then_some((
            after.0 - before.0,
            after.1 .0 - before.1 .0,
            after.1 .1 - before.1 .1,
        ));
        if let (Some(workload), Some((cpu, bytes, requests))) = (workload, cost) {
            let key = (setup, workload);
            match self.costs.iter_mut().find(|(k, _)| *k == key) {
                Some((_, c)) => c.add(cpu, bytes, requests),
                None => {
                    let mut c = Cost::new(workload);
                    c.add(cpu, bytes, requests);
                    self.costs.push((key, c));
                }
            }
        }
        let name = format!("{} [{}]", workload.unwrap_or("warm-up"), setup.label());
        println!(
            "    {name:<62} {mib_s:>7.2} MiB/s{}{}",
            cost.map(|(cpu, bytes, _)| format!(
                "  [gateway {cpu:.2} CPU s, {:.1} MB, {:.2} ms/MB]",
                bytes / 1e6,
                cpu * 1e3 / (bytes / 1e6)
            ))
            .unwrap_or_default(),
            if foreign > 0.05 {
                format!("  [other processes used {:.0}% CPU]", foreign * 100.0)
            } else {
                String::new()
            }
        );
        self.runs.push(RunRecord {
            workload: name,
            side: setup.side(),
            result,
            gateway_cpu_s: cost.map(|c| c.0),
            gateway_bytes: cost.map(|c| c.1),
            gateway_requests: cost.map(|c| c.2),
            foreign_cpu_share: foreign,
        });
        Ok(mib_s)
    }
}

/// Starts a TLS broker and a three-route gateway and measures every [`Setup`].
pub fn tls_cost(plan: &Plan, binary: &Path) -> Result<TlsReport> {
    step("TLS: a test PKI and a 1-broker Kafka 4.1.1 with an SSL listener (and a plaintext one)");
    let pki = TestPki::new()?;
    let broker_identity = pki.server("bench-broker", &["127.0.0.1", "localhost"])?;
    let spec = ClusterSpec::single()
        .tls(ListenerTls { keystore: broker_identity, client_truststore: None })
        .prop("socket.listen.backlog.size", BROKER_LISTEN_BACKLOG);
    let cluster = KafkaCluster::start(spec)?;
    java::create_topic(&cluster.internal_bootstrap(), TOPIC, PARTITIONS, 1)?;
    cluster.wait_for_topic(TOPIC, PARTITIONS as usize)?;
    step("TLS: starting the gateway (routes: plaintext, TLS client leg, TLS both legs)");
    let gateway = Gateway::start(binary, &cluster, &pki)?;
    for (setup, endpoint) in &gateway.routes {
        println!("    {endpoint}: {}", setup.label());
    }
    println!("    brokers: plaintext {}, SSL {}", cluster.internal_bootstrap(), cluster.bootstrap());
    let tls_props = vec![
        ("security.protocol".to_owned(), "SSL".to_owned()),
        ("ssl.truststore.location".to_owned(), pki.ca_truststore().display().to_string()),
        ("ssl.truststore.type".to_owned(), "PKCS12".to_owned()),
        ("ssl.truststore.password".to_owned(), TestPki::PASSWORD.to_owned()),
    ];
    let mut r = Runner {
        cluster_plain: cluster.internal_bootstrap(),
        cluster_tls: cluster.bootstrap(),
        gateway,
        tls_props,
        costs: Vec::new(),
        runs: Vec::new(),
        failures: Vec::new(),
    };
    let (n, size) = (plan.produce_records, plan.record_size);
    let produce = |records: u64| {
        move |bs: &str, props: &[(String, String)]| {
            let run = tools::producer_perf_with(bs, TOPIC, records, size, -1, "1", props)?;
            Ok((run.mib_per_sec, serde_json::to_value(&run)?))
        }
    };

    let warmup = plan.warmup_records / 2;
    step(&format!("TLS: warm-up, every setup ({warmup} records)"));
    for setup in order(0) {
        if let Err(e) = r.run(setup, None, produce(warmup)) {
            r.fail(setup, "warm-up", e);
        }
    }
    let mut mib_s: Vec<((Setup, &'static str), Vec<f64>)> =
        Setup::ALL.iter().flat_map(|s| [((*s, PRODUCE), Vec::new()), ((*s, CONSUME), Vec::new())]).collect();
    let mut record = |key: (Setup, &'static str), value: f64| {
        if let Some((_, values)) = mib_s.iter_mut().find(|(k, _)| *k == key) {
            values.push(value);
        }
    };
    step(&format!("TLS: {PRODUCE}, {n} records of {size} B, unthrottled, each setup in turn"));
    for rep in 0..plan.throughput_reps {
        for setup in order(rep) {
            match r.run(setup, Some(PRODUCE), produce(n)) {
                Ok(value) => record((setup, PRODUCE), value),
                Err(e) => r.fail(setup, PRODUCE, e),
            }
        }
    }
    step(&format!("TLS: {CONSUME}, {n} records from the start of the topic, a new group each run"));
    for rep in 0..plan.throughput_reps {
        for setup in order(rep) {
            let group = format!("bench-tls-{setup:?}-{rep}");
            let result = r.run(setup, Some(CONSUME), |bs, props| {
                let run = tools::consumer_perf_with(bs, TOPIC, n, &group, props)?;
                Ok((run.fetch_mib_per_sec, serde_json::to_value(&run)?))
            });
            match result {
                Ok(value) => record((setup, CONSUME), value),
                Err(e) => r.fail(setup, CONSUME, e),
            }
        }
    }

    let pid = r.gateway.process.pid();
    let gateway_peak_rss_kib = vm_kib(pid, "VmHWM")?;
    r.gateway.process.terminate(Duration::from_secs(30));
    drop(cluster);
    Ok(TlsReport { brokers: 1, rows: rows(mib_s, &r.costs), gateway_peak_rss_kib, failures: r.failures, runs: r.runs })
}

fn rows(mib_s: Vec<((Setup, &'static str), Vec<f64>)>, costs: &[((Setup, &'static str), Cost)]) -> Vec<TlsRow> {
    let median_of = |key: (Setup, &str)| mib_s.iter().find(|(k, _)| *k == key).map_or(f64::NAN, |(_, v)| median(v));
    let cost_of = |key: (Setup, &str)| costs.iter().find(|(k, _)| *k == key).map(|(_, c)| c.clone());
    let mut rows = Vec::new();
    for workload in [PRODUCE, CONSUME] {
        for setup in Setup::ALL {
            let key = (setup, workload);
            let values = mib_s.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()).unwrap_or_default();
            let cost = cost_of(key);
            let base_cost = cost_of((setup.baseline(), workload));
            rows.push(TlsRow {
                setup,
                label: setup.label().to_owned(),
                workload: workload.to_owned(),
                mib_s_median: median(&values),
                mib_s_ratio: median(&values) / median_of((setup.baseline(), workload)),
                mib_s: values,
                cpu_ratio: cost.as_ref().zip(base_cost).map(|(c, b)| c.cpu_ms_per_mb / b.cpu_ms_per_mb),
                gateway_cost: cost,
            });
        }
    }
    rows
}

impl TlsReport {
    /// The "TLS cost" section of report.md.
    pub fn markdown(&self, md: &mut String, reps: usize) {
        let _ = writeln!(
            md,
            "\n## TLS cost ({} broker)\n\nOne broker with an SSL listener and a plaintext one; one gateway with three \
             routes that differ only in their legs; {reps} run(s) per setup and workload, setups in turn. \
             Throughput: ProducerPerformance MiB/s (`acks=1`), ConsumerPerformance fetch MiB/s. \
             Gateway CPU ms per MB: utime+stime of the gateway over `switchyard_bytes_total` (both directions). \
             Ratios: gateway rows over the plaintext gateway route, direct rows over the plaintext listener. \
             Broker, Java clients and gateway share the CPUs, so the throughput ratios also carry the TLS work \
             of the broker and the clients; CPU ms/MB is the gateway's alone. \
             Gateway peak RSS (VmHWM) over these runs: {:.1} MiB.\n",
            self.brokers,
            self.gateway_peak_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(
            md,
            "| setup | workload | MiB/s (runs) | MiB/s | × plaintext | gateway CPU ms/MB | × plaintext |\n\
             |---|---|---|---:|---:|---:|---:|"
        );
        for row in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.2} | {} | {} |",
                row.label,
                row.workload,
                row.mib_s.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(", "),
                row.mib_s_median,
                row.mib_s_ratio,
                row.gateway_cost.as_ref().map_or("".to_owned(), |c| format!("{:.3}", c.cpu_ms_per_mb)),
                row.cpu_ratio.map_or("".to_owned(), |r| format!("{r:.2}")),
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\nFailed runs (their rows lack those figures):\n");
            for failure in &self.failures {
                let _ = writeln!(md, "- {failure}");
            }
        }
    }

    /// The console lines.
    pub fn summary(&self) -> String {
        let mut out = String::from("    TLS cost (ratio to plaintext):\n");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "      {:<48} {:<15} {:>7.1} MiB/s (x{:.2}){}",
                row.label,
                row.workload,
                row.mib_s_median,
                row.mib_s_ratio,
                row.gateway_cost
                    .as_ref()
                    .zip(row.cpu_ratio)
                    .map(|(c, r)| format!("  {:.3} CPU ms/MB (x{r:.2})", c.cpu_ms_per_mb))
                    .unwrap_or_default()
            );
        }
        for failure in &self.failures {
            let _ = writeln!(out, "      FAILED: {failure}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_repetition_runs_every_setup_in_a_new_order() {
        for rep in 0..4 {
            let mut o = order(rep);
            assert_eq!(o.len(), Setup::ALL.len());
            o.sort_by_key(|s| *s as u8);
            assert_eq!(o, Setup::ALL.to_vec());
        }
        assert_eq!(order(0)[0], Setup::DirectPlaintext);
        assert_eq!(order(1), order(0).into_iter().rev().collect::<Vec<_>>());
        assert_eq!(order(2)[0], Setup::DirectTls);
    }

    #[test]
    fn ratios_are_against_the_plaintext_row_of_the_same_path() {
        let cost = |cpu: f64| {
            let mut c = Cost::new(PRODUCE);
            c.add(cpu, 1e9, 1.0);
            c
        };
        let mib_s = vec![
            ((Setup::DirectPlaintext, PRODUCE), vec![100.0]),
            ((Setup::DirectTls, PRODUCE), vec![80.0]),
            ((Setup::GatewayPlaintext, PRODUCE), vec![50.0]),
            ((Setup::GatewayTlsBoth, PRODUCE), vec![25.0]),
        ];
        let costs =
            vec![((Setup::GatewayPlaintext, PRODUCE), cost(1.0)), ((Setup::GatewayTlsBoth, PRODUCE), cost(3.0))];
        let rows = rows(mib_s, &costs);
        let row = |setup| rows.iter().find(|r| r.setup == setup && r.workload == PRODUCE).unwrap();
        assert_eq!(row(Setup::DirectTls).mib_s_ratio, 0.8);
        assert_eq!(row(Setup::GatewayTlsBoth).mib_s_ratio, 0.5);
        assert_eq!(row(Setup::GatewayTlsBoth).cpu_ratio, Some(3.0));
        assert_eq!(row(Setup::DirectTls).cpu_ratio, None);
        assert!(row(Setup::GatewayTlsClient).mib_s_ratio.is_nan());
    }
}
