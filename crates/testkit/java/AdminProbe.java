// Prints everything the Admin client is told about the KRaft quorum and the brokers' configs, for
// switchyard_testkit::clients::admin_probe. Needs kafka-clients 3.9 or later (quorum nodes and
// their endpoints); run with the Java source launcher and that release's jars:
//   java -cp '<kafka-clients jars>/*' AdminProbe.java <bootstrap>
//
// Output, one fact per line:
//   client_version <version>
//   node <id> <host>:<port>                   (describeCluster)
//   quorum_leader <id> epoch <epoch> high_watermark <hw>
//   quorum_voter <id> directory <uuid> log_end_offset <offset> last_fetch <ms|none> last_caught_up <ms|none>
//   quorum_observer <id> ...                  (same fields)
//   quorum_node <id> endpoint <host>:<port> <endpoint as the client prints it, listener included>
//                                             (one line per endpoint; "endpoints none" if none)
//   config <broker id> <name>=<value> source=<source> read_only=<bool> sensitive=<bool>
//   synonym <broker id> <config name> <synonym name>=<value> source=<source>
//   configs <broker id> <count>
//   probe ok
// Values print as given (null as "null"); a failure exits 1 with the exception on stderr.

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RaftVoterEndpoint;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.config.ConfigResource;

public class AdminProbe {
    private static final long WAIT_S = 30;

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: AdminProbe <bootstrap servers>");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("request.timeout.ms", "20000");
        props.put("default.api.timeout.ms", "30000");
        System.out.println("client_version " + clientVersion());
        try (Admin admin = Admin.create(props)) {
            List<Node> nodes = new ArrayList<>(admin.describeCluster().nodes().get(WAIT_S, TimeUnit.SECONDS));
            nodes.sort(Comparator.comparingInt(Node::id));
            for (Node node : nodes) {
                System.out.println("node " + node.id() + " " + node.host() + ":" + node.port());
            }

            QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get(WAIT_S, TimeUnit.SECONDS);
            System.out.println("quorum_leader " + quorum.leaderId() + " epoch " + quorum.leaderEpoch()
                    + " high_watermark " + quorum.highWatermark());
            printReplicas("quorum_voter", quorum.voters());
            printReplicas("quorum_observer", quorum.observers());
            for (Map.Entry<Integer, QuorumInfo.Node> entry : quorum.nodes().entrySet()) {
                List<RaftVoterEndpoint> endpoints = entry.getValue().endpoints();
                if (endpoints.isEmpty()) {
                    System.out.println("quorum_node " + entry.getKey() + " endpoints none");
                }
                for (RaftVoterEndpoint endpoint : endpoints) {
                    System.out.println("quorum_node " + entry.getKey() + " endpoint " + endpoint.host() + ":"
                            + endpoint.port() + " " + endpoint);
                }
            }

            List<ConfigResource> resources = new ArrayList<>();
            for (Node node : nodes) {
                resources.add(new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(node.id())));
            }
            Map<ConfigResource, Config> configs = admin
                    .describeConfigs(resources, new DescribeConfigsOptions().includeSynonyms(true))
                    .all().get(WAIT_S, TimeUnit.SECONDS);
            for (ConfigResource resource : resources) {
                Collection<ConfigEntry> entries = configs.get(resource).entries();
                List<ConfigEntry> sorted = new ArrayList<>(entries);
                sorted.sort(Comparator.comparing(ConfigEntry::name));
                String broker = resource.name();
                for (ConfigEntry entry : sorted) {
                    System.out.println("config " + broker + " " + entry.name() + "=" + entry.value()
                            + " source=" + entry.source() + " read_only=" + entry.isReadOnly()
                            + " sensitive=" + entry.isSensitive());
                    for (ConfigEntry.ConfigSynonym synonym : entry.synonyms()) {
                        System.out.println("synonym " + broker + " " + entry.name() + " " + synonym.name() + "="
                                + synonym.value() + " source=" + synonym.source());
                    }
                }
                System.out.println("configs " + broker + " " + sorted.size());
            }
        }
        System.out.println("probe ok");
    }

    private static void printReplicas(String kind, List<QuorumInfo.ReplicaState> replicas) {
        for (QuorumInfo.ReplicaState replica : replicas) {
            System.out.println(kind + " " + replica.replicaId() + " directory " + replica.replicaDirectoryId()
                    + " log_end_offset " + replica.logEndOffset() + " last_fetch " + ms(replica.lastFetchTimestamp())
                    + " last_caught_up " + ms(replica.lastCaughtUpTimestamp()));
        }
    }

    private static String ms(OptionalLong value) {
        return value.isPresent() ? Long.toString(value.getAsLong()) : "none";
    }

    /** The release of kafka-clients on the classpath (read the way every release records it). */
    private static String clientVersion() throws java.io.IOException {
        Properties props = new Properties();
        try (java.io.InputStream in = Admin.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            if (in != null) {
                props.load(in);
            }
        }
        return props.getProperty("version", "unknown");
    }
}
