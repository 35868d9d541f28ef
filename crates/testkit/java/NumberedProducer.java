// Sends numbered records at a fixed rate with an idempotent producer and reports every ack, for
// switchyard_testkit::numbered::NumberedProducer (client-switchover drills: which records were
// acknowledged, which failed, and how long acks stalled while the gateway switched clusters).
// Run with the Java source launcher:
//   java -cp '<kafka jars>/*' NumberedProducer.java <bootstrap> <topic> <count> <ratePerSec> [key=value ...]
//
// Records are numbered 1..count: key "<n>", value "seq-<n>" (n zero-padded to 8 digits). A rate of
// 0 or less sends as fast as the producer accepts records. key=value arguments are producer
// configs, applied after the defaults below.
//
// Output (stdout, one line each, flushed as written; logging goes to stderr):
//   ACK <n> <partition> <offset> <epochMillis>   per successful send
//   ERR <n> <exception class>: <message>         per failed send (also for send() throwing)
//   DONE sent=<n> acked=<n> errors=<n> maxAckGapMs=<ms>   once every callback has run
// maxAckGapMs is the longest time between two consecutive acks.
//
// SIGTERM stops sending; the shutdown hook waits for main to flush, close the producer (30 s at
// most; records still pending then fail with an ERR line) and print DONE.
//
// Transactional mode, when a transactional.id=<id> config is given, runs the loop a real
// transactional application runs: initTransactions() once, then transactions of txn.records=<K>
// records (default 10; a setting of this program, not a producer config): beginTransaction,
// send K, flush, commitTransaction. The flush is what Kafka Streams does before it commits, and
// for the same reason: the Java client's sender thread checks for unfinished batches before it
// takes the EndTxn from its queue, without a lock held across both, so a record sent just before
// commitTransaction can miss its transaction (the commit goes ahead without it, and its batch,
// whose partition is no longer in a transaction, waits out delivery.timeout.ms). An abortable
// KafkaException aborts the transaction and sends the same records again in a new one, with the
// same producer; only a fatal error (the producer is fenced, unauthorized, or its state is
// unusable) ends the run. With txn.offsets.group=<group> (also a
// setting of this program) each transaction also commits, as a consume-transform-produce application
// does with sendOffsetsToTransaction, offset <last n of the transaction> of partition 0 of <topic>
// for consumer group <group>: after a run, the group's committed offset is the last record
// committed. With txn.restart.recoverable=true (a setting of this program), an error the 4.x client
// classes as application-recoverable (KIP-1050: ApplicationRecoverableException, e.g.
// InvalidPidMappingException; a fenced producer stays fatal) closes the producer and starts a new one
// with the same configuration, as Kafka Streams and Spring Kafka do, which initialises its
// transactions again and resends the transaction; also when that error reaches the program only as
// the cause of a later call's "error state" exception (Kafka Streams looks at the cause too). Lines differ:
//   ACK <n> <partition> <offset> <epochMillis>   per record of a COMMITTED transaction, after the commit
//   ERR <first n> <exception class>: <message>   per failed transaction attempt (then aborted and resent)
//   FATAL <exception class>: <message>           once, when the producer cannot go on (no DONE follows
//                                                 until it is closed)
//   DONE ... aborted=<n> restarted=<n>            aborted transactions, producers started anew
// maxAckGapMs is then the longest time between two commits.

import java.io.BufferedWriter;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthenticationException;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.StringSerializer;

public class NumberedProducer {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);
    private static final long HOOK_WAIT_MS = CLOSE_TIMEOUT.toMillis() + 15_000;

    private static final Writer OUT =
            new BufferedWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8));
    private static volatile boolean stopping = false;

    private static final AtomicLong acked = new AtomicLong();
    private static final AtomicLong errors = new AtomicLong();
    private static final AtomicLong aborted = new AtomicLong();
    private static final AtomicLong restarted = new AtomicLong();
    private static long lastAckMillis = -1;
    private static long maxAckGapMs = 0;

    static synchronized void emit(String line) {
        try {
            OUT.write(line);
            OUT.write('\n');
            OUT.flush();
        } catch (IOException e) {
            // stdout is gone (the reader died): nothing useful left to report to.
        }
    }

    static synchronized void onAck(long n, int partition, long offset) {
        long now = System.currentTimeMillis();
        if (lastAckMillis >= 0) {
            maxAckGapMs = Math.max(maxAckGapMs, now - lastAckMillis);
        }
        lastAckMillis = now;
        acked.incrementAndGet();
        emit("ACK " + n + " " + partition + " " + offset + " " + now);
    }

    static void onError(long n, Throwable e) {
        errors.incrementAndGet();
        emit("ERR " + n + " " + describe(e));
    }

    static String describe(Throwable e) {
        return e.getClass().getName() + ": " + String.valueOf(e.getMessage()).replace('\n', ' ');
    }

    /** Sleeps until record n is due at `rate` per second from `start`; false once stopping. */
    static boolean pace(long start, double rate, long n) throws InterruptedException {
        if (rate > 0) {
            long due = start + (long) ((n - 1) * 1_000_000_000.0 / rate);
            long wait;
            while (!stopping && (wait = due - System.nanoTime()) > 0) {
                Thread.sleep(Math.min(wait / 1_000_000 + 1, 100));
            }
        }
        return !stopping;
    }

    static ProducerRecord<String, String> record(String topic, long n) {
        return new ProducerRecord<>(topic, Long.toString(n), String.format("seq-%08d", n));
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: NumberedProducer <bootstrap> <topic> <count> <ratePerSec> [key=value ...]");
            System.exit(2);
        }
        String topic = args[1];
        long count = Long.parseLong(args[2]);
        double rate = Double.parseDouble(args[3]);

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.RETRIES_CONFIG, String.valueOf(Integer.MAX_VALUE));
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "120000");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        for (int i = 4; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not a key=value producer config: " + args[i]);
                System.exit(2);
            }
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        Thread mainThread = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping = true;
            try {
                mainThread.join(HOOK_WAIT_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }, "numbered-producer-shutdown"));

        // A setting of this program, not of the producer, which would warn about it.
        Object txnRecordsSetting = props.remove("txn.records");
        int txnRecords = txnRecordsSetting == null ? 10 : Integer.parseInt(txnRecordsSetting.toString());
        Object offsetsGroupSetting = props.remove("txn.offsets.group");
        ConsumerGroupMetadata offsetsGroup =
                offsetsGroupSetting == null ? null : new ConsumerGroupMetadata(offsetsGroupSetting.toString());
        boolean restartRecoverable = Boolean.parseBoolean(String.valueOf(props.remove("txn.restart.recoverable")));
        boolean transactional = props.containsKey(ProducerConfig.TRANSACTIONAL_ID_CONFIG);

        long sent = 0;
        ProducerSlot slot = new ProducerSlot(props);
        try {
            long start = System.nanoTime();
            if (transactional) {
                sent = sendTransactions(slot, topic, count, rate, txnRecords, offsetsGroup, restartRecoverable, start);
            } else {
                sent = sendIdempotent(slot.producer, topic, count, rate, start);
            }
            if (!stopping) {
                slot.producer.flush();
            }
        } finally {
            // Waits for in-flight sends (their callbacks run first); past the timeout the rest are
            // failed, and their callbacks run too, before close returns.
            slot.producer.close(CLOSE_TIMEOUT);
        }
        synchronized (NumberedProducer.class) {
            emit("DONE sent=" + sent + " acked=" + acked.get() + " errors=" + errors.get()
                    + " maxAckGapMs=" + maxAckGapMs + " aborted=" + aborted.get() + " restarted=" + restarted.get());
        }
    }

    static long sendIdempotent(KafkaProducer<String, String> producer, String topic, long count, double rate,
            long start) throws InterruptedException {
        long sent = 0;
        for (long n = 1; n <= count && pace(start, rate, n); n++) {
            final long seq = n;
            try {
                producer.send(record(topic, seq), (metadata, e) -> {
                    if (e != null) {
                        onError(seq, e);
                    } else {
                        onAck(seq, metadata.partition(), metadata.offset());
                    }
                });
            } catch (Exception e) {
                // send() itself failed (for example max.block.ms spent waiting for metadata):
                // no callback follows.
                onError(seq, e);
            }
            sent++;
        }
        return sent;
    }

    /** The application's producer, which a transactional application may replace. */
    static final class ProducerSlot {
        private final Properties props;
        KafkaProducer<String, String> producer;

        ProducerSlot(Properties props) {
            this.props = props;
            this.producer = new KafkaProducer<>(props);
        }

        /** Closes the producer (its open transaction is lost) and starts one with the same configuration. */
        void restart() {
            producer.close(Duration.ZERO);
            producer = new KafkaProducer<>(props);
            restarted.incrementAndGet();
        }
    }

    /**
     * Closes the slot's producer and starts a new one with the same configuration, as an
     * application does after an application-recoverable error; whether it could.
     */
    static boolean restart(ProducerSlot slot) {
        try {
            slot.restart();
            slot.producer.initTransactions();
            return true;
        } catch (RuntimeException restartFailed) {
            emit("FATAL a new producer could not start: " + describe(restartFailed));
            return false;
        }
    }

    /**
     * Whether the 4.x client classes the error, or one it wraps, as application-recoverable:
     * the producer is unusable, and the application is to start a new one (KIP-1050). Found by
     * class name, so that this program also runs on clients from before that class.
     */
    static boolean applicationRecoverable(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            for (Class<?> c = t.getClass(); c != null; c = c.getSuperclass()) {
                if (c.getName().equals("org.apache.kafka.common.errors.ApplicationRecoverableException")) {
                    return true;
                }
            }
        }
        return false;
    }

    /**
     * Errors after which the producer cannot be used again, whatever the application does: the
     * Java client's documented fatal errors. Everything else that is a KafkaException is treated
     * as abortable, as the client's javadoc tells applications to.
     */
    static boolean fatal(Throwable e) {
        return e instanceof ProducerFencedException
                || e instanceof OutOfOrderSequenceException
                || e instanceof AuthorizationException
                || e instanceof AuthenticationException
                || e instanceof UnsupportedVersionException
                || e instanceof IllegalStateException;
    }

    /**
     * Transactions of txnRecords records; a failed one is aborted and its records sent again in
     * the next. Records are ACKed only once their transaction committed. With an offsetsGroup,
     * each transaction also commits that group's offset of partition 0 of topic: its last record.
     * Returns records handed to send(), resends included.
     */
    static long sendTransactions(ProducerSlot slot, String topic, long count, double rate, int txnRecords,
            ConsumerGroupMetadata offsetsGroup, boolean restartRecoverable, long start) throws InterruptedException {
        long sent = 0;
        try {
            slot.producer.initTransactions();
        } catch (RuntimeException e) {
            emit("FATAL " + describe(e));
            return sent;
        }
        long first = 1;
        while (first <= count && !stopping) {
            KafkaProducer<String, String> producer = slot.producer;
            long last = Math.min(count, first + txnRecords - 1);
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            try {
                producer.beginTransaction();
                for (long n = first; n <= last; n++) {
                    // A resent transaction is not paced again: its records are already due.
                    if (!pace(start, rate, n)) {
                        break;
                    }
                    sends.add(producer.send(record(topic, n)));
                    sent++;
                }
                if (stopping) {
                    producer.abortTransaction();
                    break;
                }
                producer.flush();
                if (offsetsGroup != null) {
                    producer.sendOffsetsToTransaction(
                            Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(last)), offsetsGroup);
                }
                producer.commitTransaction();
                for (int i = 0; i < sends.size(); i++) {
                    RecordMetadata metadata = sends.get(i).get();
                    onAck(first + i, metadata.partition(), metadata.offset());
                }
                first = last + 1;
            } catch (KafkaException | IllegalStateException | ExecutionException e) {
                Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                onError(first, cause);
                if (fatal(cause)) {
                    emit("FATAL " + describe(cause));
                    return sent;
                }
                if (restartRecoverable && applicationRecoverable(cause)) {
                    if (!restart(slot)) {
                        return sent;
                    }
                    continue;
                }
                try {
                    producer.abortTransaction();
                    aborted.incrementAndGet();
                } catch (RuntimeException abortFailed) {
                    // The error that made the producer unusable can reach the application first
                    // here, wrapped ("... in an error state"): the 4.1 client does not fail a
                    // transactional call that was waiting when it came, which then times out.
                    if (restartRecoverable && applicationRecoverable(abortFailed)) {
                        if (!restart(slot)) {
                            return sent;
                        }
                        continue;
                    }
                    emit("FATAL abortTransaction failed: " + describe(abortFailed));
                    return sent;
                }
            }
        }
        return sent;
    }
}
