package dev.kfn.peers;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A transactional producer driven line by line from stdin.
 *
 * <pre>TxnProducer BOOTSTRAP TOPIC TRANSACTIONAL_ID</pre>
 *
 * Prints {"ready":true} after initTransactions(), then reads commands until EOF:
 * {@code begin}, {@code send PARTITION KEY VALUE_HEX} (key as UTF-8; VALUE_HEX may
 * be omitted for an empty value), {@code flush}, {@code commit}, {@code abort}.
 * After each command it prints {"ok":"COMMAND"}. Any failure ends it with exit 1
 * (exit 2 for a bad command line) and a message on stderr.
 */
public final class TxnProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            throw Out.fail(2, "usage: TxnProducer BOOTSTRAP TOPIC TRANSACTIONAL_ID");
        }
        String topic = args[1];
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[2]);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
        String command = "initTransactions";
        try {
            producer.initTransactions();
            Out.line("{\"ready\":true}");
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                line = line.strip();
                if (line.isEmpty()) {
                    continue;
                }
                String[] w = line.split("\\s+");
                command = w[0];
                switch (command) {
                    case "begin" -> producer.beginTransaction();
                    case "send" -> {
                        if (w.length != 3 && w.length != 4) {
                            throw Out.fail(2, "usage: send PARTITION KEY VALUE_HEX, got " + Out.str(line));
                        }
                        int partition;
                        byte[] value;
                        try {
                            partition = Integer.parseInt(w[1]);
                            value = w.length == 4 ? Out.unhex(w[3]) : new byte[0];
                        } catch (IllegalArgumentException e) {
                            throw Out.fail(2, "bad send command " + Out.str(line) + ": " + e.getMessage());
                        }
                        byte[] key = w[2].getBytes(StandardCharsets.UTF_8);
                        producer.send(new ProducerRecord<>(topic, partition, key, value));
                    }
                    case "flush" -> producer.flush();
                    case "commit" -> producer.commitTransaction();
                    case "abort" -> producer.abortTransaction();
                    default -> throw Out.fail(2, "unknown command " + Out.str(line)
                            + " (expected begin, send, flush, commit or abort)");
                }
                Out.line("{\"ok\":" + Out.str(command) + "}");
            }
        } catch (Exception e) {
            producer.close(Duration.ZERO);
            throw Out.fail(1, "TxnProducer: " + command + " failed: " + Out.describe(e));
        }
        producer.close(Duration.ofSeconds(10));
    }
}
