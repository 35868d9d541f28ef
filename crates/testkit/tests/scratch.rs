use std::time::Duration;
use switchyard_testkit::kafka::java_command;
use switchyard_testkit::process::run;
use switchyard_testkit::{ClusterSpec, KafkaCluster};

#[test]
fn scratch() {
    let cluster = KafkaCluster::start(ClusterSpec::single()).unwrap();
    let b = cluster.bootstrap();
    let mut cmd = java_command(&["-Xmx256m"]).unwrap();
    cmd.args(["org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", &b, "--topic", "x", "--from-beginning", "--max-messages", "3", "--timeout-ms", "2000"]);
    let out = run(cmd, None, Duration::from_secs(60)).unwrap();
    eprintln!("status {:?}\n{}", out.status, out.describe());
}
