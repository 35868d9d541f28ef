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

import java.io.BufferedWriter;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class NumberedProducer {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);
    private static final long HOOK_WAIT_MS = CLOSE_TIMEOUT.toMillis() + 15_000;

    private static final Writer OUT =
            new BufferedWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8));
    private static volatile boolean stopping = false;

    private static final AtomicLong acked = new AtomicLong();
    private static final AtomicLong errors = new AtomicLong();
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
        String message = String.valueOf(e.getMessage()).replace('\n', ' ');
        emit("ERR " + n + " " + e.getClass().getName() + ": " + message);
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

        long sent = 0;
        KafkaProducer<String, String> producer = new KafkaProducer<>(props);
        try {
            long start = System.nanoTime();
            for (long n = 1; n <= count && !stopping; n++) {
                if (rate > 0) {
                    long due = start + (long) ((n - 1) * 1_000_000_000.0 / rate);
                    long wait;
                    while (!stopping && (wait = due - System.nanoTime()) > 0) {
                        Thread.sleep(Math.min(wait / 1_000_000 + 1, 100));
                    }
                    if (stopping) {
                        break;
                    }
                }
                final long seq = n;
                ProducerRecord<String, String> record =
                        new ProducerRecord<>(topic, Long.toString(seq), String.format("seq-%08d", seq));
                try {
                    producer.send(record, (metadata, e) -> {
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
            if (!stopping) {
                producer.flush();
            }
        } finally {
            // Waits for in-flight sends (their callbacks run first); past the timeout the rest are
            // failed, and their callbacks run too, before close returns.
            producer.close(CLOSE_TIMEOUT);
        }
        synchronized (NumberedProducer.class) {
            emit("DONE sent=" + sent + " acked=" + acked.get() + " errors=" + errors.get()
                    + " maxAckGapMs=" + maxAckGapMs);
        }
    }
}
