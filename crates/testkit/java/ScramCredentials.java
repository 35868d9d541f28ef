// Alters and describes users' SCRAM credentials with the Admin client (alterUserScramCredentials,
// describeUserScramCredentials), logged in with SCRAM, for tests/swap.rs. Run with the Java source
// launcher and the Kafka jars:
//   java -cp '<kafka jars>/*' ScramCredentials.java <bootstrap> <login mechanism> <login user> <login password> <op>...
// Ops, all alterations sent in one request:
//   upsert:<user>:<SCRAM-SHA-256|SCRAM-SHA-512>:<iterations>:<password>
//   delete:<user>:<SCRAM-SHA-256|SCRAM-SHA-512>
//   describe:<user>
// Output, one line per user (sorted) and outcome:
//   alter <user> ok | alter <user> error <exception class> <message>
//   describe <user> <mechanism> <iterations> | describe <user> error <exception class>
// A failure outside the per-user results exits 1 with the exception on stderr.

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.DescribeUserScramCredentialsResult;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.KafkaFuture;

public class ScramCredentials {
    private static final long WAIT_S = 30;

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: ScramCredentials <bootstrap> <mechanism> <user> <password> <op>...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("security.protocol", "SASL_PLAINTEXT");
        props.put("sasl.mechanism", args[1]);
        props.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + args[2] + "\" password=\"" + args[3] + "\";");
        props.put("request.timeout.ms", "15000");
        props.put("default.api.timeout.ms", "30000");
        List<UserScramCredentialAlteration> alterations = new ArrayList<>();
        List<String> described = new ArrayList<>();
        for (int i = 4; i < args.length; i++) {
            String[] op = args[i].split(":", 5);
            switch (op[0]) {
                case "upsert" -> alterations.add(new UserScramCredentialUpsertion(op[1],
                        new ScramCredentialInfo(ScramMechanism.fromMechanismName(op[2]), Integer.parseInt(op[3])),
                        op[4]));
                case "delete" -> alterations.add(
                        new UserScramCredentialDeletion(op[1], ScramMechanism.fromMechanismName(op[2])));
                case "describe" -> described.add(op[1]);
                default -> throw new IllegalArgumentException("unknown op " + op[0]);
            }
        }
        try (Admin admin = Admin.create(props)) {
            if (!alterations.isEmpty()) {
                Map<String, KafkaFuture<Void>> results =
                        new TreeMap<>(admin.alterUserScramCredentials(alterations).values());
                for (Map.Entry<String, KafkaFuture<Void>> result : results.entrySet()) {
                    try {
                        result.getValue().get(WAIT_S, TimeUnit.SECONDS);
                        System.out.println("alter " + result.getKey() + " ok");
                    } catch (ExecutionException e) {
                        System.out.println("alter " + result.getKey() + " error "
                                + e.getCause().getClass().getSimpleName() + " " + e.getCause().getMessage());
                    }
                }
            }
            if (!described.isEmpty()) {
                DescribeUserScramCredentialsResult result = admin.describeUserScramCredentials(described);
                for (String user : described) {
                    try {
                        for (ScramCredentialInfo info :
                                result.description(user).get(WAIT_S, TimeUnit.SECONDS).credentialInfos()) {
                            System.out.println("describe " + user + " " + info.mechanism().mechanismName() + " "
                                    + info.iterations());
                        }
                    } catch (ExecutionException e) {
                        System.out.println("describe " + user + " error " + e.getCause().getClass().getSimpleName());
                    }
                }
            }
        }
    }
}
