//! The command-line side of the admin API: `switchyard status` and `switchyard switchover`
//! call a running gateway over HTTP and print what it says as tables for a terminal.

use serde_json::Value;

use crate::config::SwitchoverRequest;
use crate::config::{DEFAULT_ADMIN_ADDRESS, ENV_ADMIN_ADDRESS, ENV_ADMIN_TOKEN};

/// The admin API of the local node: `GATEWAY_ADMIN_ADDRESS`, else the default address.
pub fn default_admin_url() -> String {
    let address = std::env::var(ENV_ADMIN_ADDRESS).unwrap_or_else(|_| DEFAULT_ADMIN_ADDRESS.to_string());
    format!("http://{address}")
}

/// Fetch routes and domains from the admin API at `base` and render them.
pub fn status(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let routes = get_json(&format!("{base}/admin/v1/routes"))?;
    let domains = get_json(&format!("{base}/admin/v1/domains"))?;
    let cluster = get_json(&format!("{base}/admin/v1/cluster"))?;
    let mut out = String::from("ROUTES\n");
    out += &format!(
        "{:<20} {:<24} {:<12} {:<14} {:<10} {}\n",
        "NAME", "ENDPOINT", "PORTS", "DOMAIN", "REACHABLE", "BROKERS (node:port -> upstream)"
    );
    for route in routes.as_array().into_iter().flatten() {
        let ports = format!("{}-{}", route["ports"]["first"], route["ports"]["last"]);
        let brokers: Vec<String> = route["brokers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| format!("{}:{} -> {}", b["nodeId"], b["port"], text(&b["upstream"])))
            .collect();
        out += &format!(
            "{:<20} {:<24} {:<12} {:<14} {:<10} {}\n",
            text(&route["name"]),
            text(&route["endpoint"]),
            ports,
            text(&route["domain"]),
            route["domainReachable"],
            brokers.join(", ")
        );
    }
    out += "\nDOMAINS\n";
    out += &format!("{:<20} {:<20} {:<40} {:<20} {}\n", "NAME", "CLUSTER", "BOOTSTRAP", "NODE ID RANGES", "ROUTES");
    for domain in domains.as_array().into_iter().flatten() {
        let bootstrap: Vec<String> =
            list(&domain["bootstrapServers"]).map(|s| format!("{}={}", text(&s["id"]), text(&s["endpoint"]))).collect();
        let ranges: Vec<String> =
            list(&domain["nodeIdRanges"]).map(|r| format!("{}-{}", r["start"], r["end"])).collect();
        let routes: Vec<String> = list(&domain["routes"]).map(text).collect();
        out += &format!(
            "{:<20} {:<20} {:<40} {:<20} {}\n",
            text(&domain["name"]),
            text(&domain["clusterName"]),
            bootstrap.join(" "),
            ranges.join(","),
            routes.join(",")
        );
    }
    out += &render_cluster(&cluster);
    Ok(out)
}

fn render_cluster(cluster: &Value) -> String {
    let Some(id) = cluster["clusterId"].as_str() else {
        return "\nCLUSTER\nnot in a gateway cluster (GATEWAY_CLUSTER_ID is not set)\n".to_string();
    };
    let mut out = format!(
        "\nCLUSTER {id} (this node: {}, internal load balancing: {})\n{:<24} {:<24} {}\n",
        text(&cluster["self"]["nodeId"]),
        cluster["internalLoadBalancing"],
        "NODE",
        "HOST",
        "RACK"
    );
    for member in list(&cluster["members"]) {
        out += &format!("{:<24} {:<24} {}\n", text(&member["nodeId"]), text(&member["host"]), text(&member["rack"]));
    }
    out += &format!("\n{:<20} {:<8} {:<10} {}\n", "ROUTE", "BROKER", "RACK", "ADVERTISED AT");
    for route in list(&cluster["mapping"]) {
        for broker in list(&route["brokers"]) {
            out += &format!(
                "{:<20} {:<8} {:<10} {}:{}\n",
                text(&route["route"]),
                broker["nodeId"],
                text(&broker["rack"]),
                text(&broker["advertisedHost"]),
                broker["port"]
            );
        }
    }
    out
}

fn get_json(url: &str) -> anyhow::Result<Value> {
    let mut response = ureq::get(url).call().map_err(|e| unreachable(url, e))?;
    let body = response.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

fn unreachable(url: &str, e: ureq::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach the admin API at {url}: {e}. Is the gateway running? Pass --admin URL or set {ENV_ADMIN_ADDRESS}"
    )
}

/// Ask the gateway at `base` for a switchover; returns whether it completed (or its dry run
/// passed) and the report to print.
pub fn switchover(base: &str, route: &str, request: &SwitchoverRequest) -> anyhow::Result<(bool, String)> {
    let url = format!("{}/admin/v1/routes/{route}/switchover", base.trim_end_matches('/'));
    let token = std::env::var(ENV_ADMIN_TOKEN).unwrap_or_default();
    if token.is_empty() {
        anyhow::bail!("set {ENV_ADMIN_TOKEN} to the gateway's admin token: a switchover changes where clients go");
    }
    let body = serde_json::to_string(request)?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| unreachable(&url, e))?;
    let status = response.status().as_u16();
    let answer: Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    if let Some(error) = answer["error"].as_str() {
        let report = answer.get("report").map(render_report).unwrap_or_default();
        return Ok((false, format!("switchover refused (HTTP {status}): {error}\n{report}")));
    }
    let ok = matches!(answer["outcome"].as_str(), Some("completed" | "dry-run"));
    Ok((ok, render_report(&answer)))
}

fn render_report(report: &Value) -> String {
    let mut out = format!(
        "switchover of route {} from {} to {}: {} ({})\n\nPHASE        DURATION   DETAIL\n",
        text(&report["route"]),
        text(&report["from"]),
        text(&report["to"]),
        text(&report["outcome"]),
        text(&report["message"])
    );
    for phase in list(&report["phases"]) {
        out += &format!("{:<12} {:>7} ms  {}\n", text(&phase["name"]), phase["durationMs"], text(&phase["detail"]));
    }
    out += "\nTOPIC                          PARTITIONS (src/dst)   RECORD LAG   OFFSET LAG PER PARTITION\n";
    for topic in list(&report["topics"]) {
        let partitions = format!("{}/{}", topic["sourcePartitions"], topic["destinationPartitions"]);
        let offsets: Vec<String> = list(&topic["offsetLag"]).map(|v| v.to_string()).collect();
        out += &format!(
            "{:<30} {:<22} {:>10}   {}\n",
            text(&topic["topic"]),
            partitions,
            topic["recordLag"],
            offsets.join(" ")
        );
    }
    out
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
}
