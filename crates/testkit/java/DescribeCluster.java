// Prints what Admin.describeCluster() reports, for switchyard_testkit::java::describe_cluster.
// Run with the Java source launcher: java -cp '<kafka jars>/*' DescribeCluster.java <bootstrap>
//
// Output:
//   cluster_id <id>
//   node <id> <host> <port> <rack|null>      (one per node, sorted by id)
//   controller <id> <host> <port>            (or "controller none")

import java.util.Comparator;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

public class DescribeCluster {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: DescribeCluster <bootstrap servers>");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            DescribeClusterResult result = admin.describeCluster();
            System.out.println("cluster_id " + result.clusterId().get(30, TimeUnit.SECONDS));
            List<Node> nodes = new java.util.ArrayList<>(result.nodes().get(30, TimeUnit.SECONDS));
            nodes.sort(Comparator.comparingInt(Node::id));
            for (Node node : nodes) {
                String rack = node.hasRack() ? node.rack() : "null";
                System.out.println("node " + node.id() + " " + node.host() + " " + node.port() + " " + rack);
            }
            Node controller = result.controller().get(30, TimeUnit.SECONDS);
            if (controller == null || controller.isEmpty()) {
                System.out.println("controller none");
            } else {
                System.out.println("controller " + controller.id() + " " + controller.host() + " " + controller.port());
            }
        }
    }
}
