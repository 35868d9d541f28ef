// Exercises one release of the Java client end to end, for switchyard_testkit::clients.
// Run with the Java source launcher and ONLY that release's jars on the classpath:
//   java -cp '<kafka-clients-X.Y.Z jars>/*' ClientWorkout.java <bootstrap> <name> <records> [deadline s]
//
// Uses only APIs present in kafka-clients 2.5 through 4.x (Admin, poll(Duration),
// sendOffsetsToTransaction(..., consumer.groupMetadata())). With <name> = N it creates topics N and
// N-txn (3 partitions, replication factor 3 or fewer if the cluster is smaller), then:
//   1. Admin: describeCluster and listTopics;
//   2. an idempotent producer (acks=all) sends <records> records to N;
//   3. a consumer in group N-group (subscribe, no auto-commit) reads them and commits;
//   4. a transactional producer (transactional.id N-txid) commits <records>/10 records to N-txn
//      with offsets for group N-txn-group, then aborts another batch;
//   5. a read_committed consumer reads N-txn to its end.
//
// Output, one fact per line ("<key> <values...>"), addresses always as host:port:
//   client_version <version>
//   phase <name> at <ms> ms                   (as each phase starts, so a hang shows where)
//   cluster_id <id>
//   node <id> <host>:<port>                   (describeCluster, sorted by id)
//   controller <id> <host>:<port>             (or "controller none")
//   topic_listed <topic>                      (each created topic, once listTopics shows it)
//   leader <client> <topic>-<p> <id> <host>:<port>      (partitionsFor, as each client saw it)
//   replica <client> <topic>-<p> <id> <host>:<port>
//   produced <acked>
//   consumed <total> distinct <distinct> expected <records>
//   group_committed <group> <sum of committed offsets>
//   txn_committed_sent <n>
//   txn_aborted_sent <n>
//   read_committed committed <n> aborted <n>
//   txn_group_committed <group> <sum of committed offsets>
//   workout ok
// A failure prints "workout failed in phase <phase>: <exception>" to stderr and exits 1; the
// deadline (default 150 s) exits 3 with "workout timed out in phase <phase>".

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClientWorkout {
    private static final int PARTITIONS = 3;
    private static final long WAIT_S = 30;
    private static final long STARTED = System.nanoTime();
    private static volatile String phase = "start";

    public static void main(String[] args) throws Exception {
        if (args.length < 3 || args.length > 4) {
            System.err.println("usage: ClientWorkout <bootstrap> <name> <records> [deadline seconds]");
            System.exit(2);
        }
        String bootstrap = args[0];
        String name = args[1];
        int records = Integer.parseInt(args[2]);
        long deadline = args.length > 3 ? Long.parseLong(args[3]) : 150;
        startWatchdog(deadline);
        try {
            run(bootstrap, name, records);
            System.out.println("workout ok");
            System.out.flush();
            System.exit(0);
        } catch (Throwable e) {
            System.out.flush();
            System.err.println("workout failed in phase " + phase + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static void startWatchdog(long seconds) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(seconds * 1000);
            } catch (InterruptedException e) {
                return;
            }
            System.out.flush();
            System.err.println("workout timed out in phase " + phase + " after " + seconds + " s");
            Runtime.getRuntime().halt(3);
        }, "workout-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }

    private static void phase(String name) {
        phase = name;
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - STARTED);
        System.out.println("phase " + name + " at " + ms + " ms");
        System.out.flush();
    }

    private static String addr(Node node) {
        return node.host() + ":" + node.port();
    }

    private static void run(String bootstrap, String name, int records) throws Exception {
        System.out.println("client_version " + clientVersion());
        String topic = name;
        String txnTopic = name + "-txn";
        String group = name + "-group";
        String txnGroup = name + "-txn-group";

        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            phase("metadata");
            List<Node> nodes = new ArrayList<>(admin.describeCluster().nodes().get(WAIT_S, TimeUnit.SECONDS));
            nodes.sort(Comparator.comparingInt(Node::id));
            System.out.println("cluster_id " + admin.describeCluster().clusterId().get(WAIT_S, TimeUnit.SECONDS));
            for (Node node : nodes) {
                System.out.println("node " + node.id() + " " + addr(node));
            }
            Node controller = admin.describeCluster().controller().get(WAIT_S, TimeUnit.SECONDS);
            System.out.println(controller == null || controller.isEmpty()
                    ? "controller none" : "controller " + controller.id() + " " + addr(controller));

            phase("create_topics");
            short replication = (short) Math.min(3, nodes.size());
            for (String t : new String[] {topic, txnTopic}) {
                try {
                    admin.createTopics(Collections.singleton(new NewTopic(t, PARTITIONS, replication)))
                            .all().get(WAIT_S, TimeUnit.SECONDS);
                } catch (java.util.concurrent.ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
            phase("list_topics");
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
            Set<String> listed = admin.listTopics().names().get(WAIT_S, TimeUnit.SECONDS);
            while (!(listed.contains(topic) && listed.contains(txnTopic)) && System.nanoTime() < until) {
                Thread.sleep(200);
                listed = admin.listTopics().names().get(WAIT_S, TimeUnit.SECONDS);
            }
            for (String t : new String[] {topic, txnTopic}) {
                if (listed.contains(t)) {
                    System.out.println("topic_listed " + t);
                }
            }

            produce(bootstrap, topic, records);
            consume(bootstrap, topic, group, records);
            phase("group_offsets");
            System.out.println("group_committed " + group + " " + committedSum(admin, group));

            int committed = Math.max(1, records / 10);
            transact(bootstrap, name, topic, txnTopic, txnGroup, committed);
            readCommitted(bootstrap, txnTopic);
            phase("txn_group_offsets");
            System.out.println("txn_group_committed " + txnGroup + " " + committedSum(admin, txnGroup));
        }
    }

    private static Properties adminProps(String bootstrap) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("request.timeout.ms", "20000");
        props.put("default.api.timeout.ms", "30000");
        return props;
    }

    private static Properties producerProps(String bootstrap) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        props.put("enable.idempotence", "true");
        props.put("linger.ms", "5");
        props.put("max.block.ms", "30000");
        props.put("request.timeout.ms", "20000");
        props.put("delivery.timeout.ms", "60000");
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        return props;
    }

    private static Properties consumerProps(String bootstrap) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("request.timeout.ms", "20000");
        props.put("default.api.timeout.ms", "30000");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        return props;
    }

    private static void printPartitions(String client, List<PartitionInfo> partitions) {
        List<PartitionInfo> sorted = new ArrayList<>(partitions);
        sorted.sort(Comparator.comparingInt(PartitionInfo::partition));
        for (PartitionInfo p : sorted) {
            String tp = p.topic() + "-" + p.partition();
            if (p.leader() != null && !p.leader().isEmpty()) {
                System.out.println("leader " + client + " " + tp + " " + p.leader().id() + " " + addr(p.leader()));
            }
            for (Node replica : p.replicas()) {
                System.out.println("replica " + client + " " + tp + " " + replica.id() + " " + addr(replica));
            }
        }
    }

    private static void produce(String bootstrap, String topic, int records) throws Exception {
        phase("produce");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(bootstrap))) {
            printPartitions("producer", producer.partitionsFor(topic));
            List<java.util.concurrent.Future<RecordMetadata>> acks = new ArrayList<>(records);
            for (int i = 0; i < records; i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, "k" + i, topic + "-" + i)));
            }
            producer.flush();
            int acked = 0;
            for (java.util.concurrent.Future<RecordMetadata> ack : acks) {
                ack.get(WAIT_S, TimeUnit.SECONDS);
                acked++;
            }
            System.out.println("produced " + acked);
        }
    }

    private static void consume(String bootstrap, String topic, String group, int records) {
        phase("group_consume");
        Properties props = consumerProps(bootstrap);
        props.put("group.id", group);
        props.put("max.poll.records", "500");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(Collections.singleton(topic));
            Set<String> seen = new HashSet<>();
            long total = 0;
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (seen.size() < records && System.nanoTime() < until) {
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> record : batch) {
                    seen.add(record.value());
                    total++;
                }
            }
            printPartitions("consumer", consumer.partitionsFor(topic));
            System.out.println("consumed " + total + " distinct " + seen.size() + " expected " + records);
            phase("group_commit");
            consumer.commitSync(Duration.ofSeconds(WAIT_S));
        }
    }

    private static long committedSum(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(WAIT_S, TimeUnit.SECONDS);
        long sum = 0;
        for (OffsetAndMetadata offset : offsets.values()) {
            if (offset != null) {
                sum += offset.offset();
            }
        }
        return sum;
    }

    private static void transact(String bootstrap, String name, String topic, String txnTopic, String txnGroup,
            int count) throws Exception {
        phase("txn_init");
        Properties props = producerProps(bootstrap);
        props.put("transactional.id", name + "-txid");
        props.put("transaction.timeout.ms", "30000");
        // A consumer that never joins gives the group's metadata for offsets committed in the
        // transaction (new ConsumerGroupMetadata(group) is deprecated in 4.x).
        Properties groupProps = consumerProps(bootstrap);
        groupProps.put("group.id", txnGroup);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props);
                KafkaConsumer<String, String> groupMember = new KafkaConsumer<>(groupProps)) {
            producer.initTransactions();
            phase("txn_commit");
            producer.beginTransaction();
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(txnTopic, "k" + i, "committed-" + i));
            }
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                offsets.put(new TopicPartition(topic, p), new OffsetAndMetadata(1));
            }
            producer.sendOffsetsToTransaction(offsets, groupMember.groupMetadata());
            producer.commitTransaction();
            System.out.println("txn_committed_sent " + count);
            phase("txn_abort");
            producer.beginTransaction();
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(txnTopic, "k" + i, "aborted-" + i));
            }
            producer.flush();
            producer.abortTransaction();
            System.out.println("txn_aborted_sent " + count);
        }
    }

    private static void readCommitted(String bootstrap, String txnTopic) {
        phase("read_committed");
        Properties props = consumerProps(bootstrap);
        props.put("isolation.level", "read_committed");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo p : consumer.partitionsFor(txnTopic)) {
                partitions.add(new TopicPartition(p.topic(), p.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            // Under read_committed, end offsets are the last stable offsets: once every
            // partition's position reaches them, everything committed has been read.
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
            int committed = 0;
            int aborted = 0;
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (!reached(consumer, end) && System.nanoTime() < until) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    if (record.value().startsWith("committed-")) {
                        committed++;
                    } else if (record.value().startsWith("aborted-")) {
                        aborted++;
                    }
                }
            }
            System.out.println("read_committed committed " + committed + " aborted " + aborted);
        }
    }

    private static boolean reached(KafkaConsumer<String, String> consumer, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
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
