//! `switchyard status`: the admin API's view, as tables for a terminal.

use serde_json::Value;

use crate::config::{DEFAULT_ADMIN_ADDRESS, ENV_ADMIN_ADDRESS};

/// The admin API of the local node: `GATEWAY_ADMIN_ADDRESS`, else the default address.
pub fn default_admin_url() -> String {
    let address = std::env::var(ENV_ADMIN_ADDRESS).unwrap_or_else(|_| DEFAULT_ADMIN_ADDRESS.to_string());
    format!("http://{address}")
}

/// Fetch routes and domains from the admin API at `base` and render them.
pub fn render(base: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    let routes = get_json(&format!("{base}/admin/v1/routes"))?;
    let domains = get_json(&format!("{base}/admin/v1/domains"))?;
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
    Ok(out)
}

fn get_json(url: &str) -> anyhow::Result<Value> {
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("cannot reach the admin API at {url}: {e}. Is the gateway running? Pass --admin URL or set GATEWAY_ADMIN_ADDRESS"))?;
    let body = response.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
}
