package dev.kfn.peers;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

/**
 * Reads a whole topic from the beginning with isolation.level=read_committed.
 *
 * <pre>ReadCommitted BOOTSTRAP TOPIC EXPECTED_COUNT TIMEOUT_SECONDS</pre>
 *
 * Assigns every partition (no group), polls until it has read at least EXPECTED_COUNT
 * records and its position has reached the end offset (the last stable offset, under
 * read_committed) of every partition. Prints one line per record
 * {"partition":P,"offset":O,"key":"..."|null,"value_hex":"..."} and at the end
 * {"count":N} (also on timeout, where it then exits 1 naming the counts on stderr).
 */
public final class ReadCommitted {
    public static void main(String[] args) {
        if (args.length != 4) {
            throw Out.fail(2, "usage: ReadCommitted BOOTSTRAP TOPIC EXPECTED_COUNT TIMEOUT_SECONDS");
        }
        String topic = args[1];
        int expected = Out.intArg(args, 2, "EXPECTED_COUNT");
        int timeoutSeconds = Out.intArg(args, 3, "TIMEOUT_SECONDS");
        long deadline = System.nanoTime() + Duration.ofSeconds(timeoutSeconds).toNanos();

        Properties p = new Properties();
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        KafkaConsumer<byte[], byte[]> consumer = Out.consumer("ReadCommitted", args[0], p);
        long count = 0;
        Map<TopicPartition, Long> positions = new TreeMap<>((a, b) -> Integer.compare(a.partition(), b.partition()));
        Map<TopicPartition, Long> ends = Map.of();
        try {
            List<TopicPartition> tps = new ArrayList<>();
            while (tps.isEmpty()) {
                List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(5));
                if (infos != null) {
                    for (PartitionInfo info : infos) {
                        tps.add(new TopicPartition(topic, info.partition()));
                    }
                }
                if (tps.isEmpty()) {
                    if (System.nanoTime() - deadline >= 0) {
                        consumer.close(Duration.ZERO);
                        throw Out.fail(1, "ReadCommitted: timeout after " + timeoutSeconds + " s: topic " + topic + " not found");
                    }
                    Thread.sleep(200);
                }
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            while (true) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    count++;
                    String key = r.key() == null ? null : new String(r.key(), StandardCharsets.UTF_8);
                    Out.line("{\"partition\":" + r.partition() + ",\"offset\":" + r.offset()
                            + ",\"key\":" + Out.str(key) + ",\"value_hex\":" + Out.str(Out.hex(r.value())) + "}");
                }
                boolean atEnd = false;
                if (count >= expected) {
                    ends = consumer.endOffsets(tps, Duration.ofSeconds(5));
                    atEnd = true;
                    for (TopicPartition tp : tps) {
                        long pos = consumer.position(tp, Duration.ofSeconds(5));
                        positions.put(tp, pos);
                        if (pos < ends.get(tp)) {
                            atEnd = false;
                        }
                    }
                }
                if (atEnd) {
                    break;
                }
                if (System.nanoTime() - deadline >= 0) {
                    for (TopicPartition tp : tps) {
                        positions.put(tp, consumer.position(tp, Duration.ofSeconds(5)));
                    }
                    ends = consumer.endOffsets(tps, Duration.ofSeconds(5));
                    Out.line("{\"count\":" + count + "}");
                    consumer.close(Duration.ZERO);
                    throw Out.fail(1, "ReadCommitted: timeout after " + timeoutSeconds + " s: read " + count + " of "
                            + expected + " expected records from " + topic + "; positions " + byPartition(positions)
                            + ", end offsets (LSO) " + byPartition(ends));
                }
            }
        } catch (Exception e) {
            consumer.close(Duration.ZERO);
            throw Out.fail(1, "ReadCommitted: " + Out.describe(e) + " after reading " + count + " records");
        }
        Out.line("{\"count\":" + count + "}");
        consumer.close(Duration.ofSeconds(5));
    }

    private static String byPartition(Map<TopicPartition, Long> offsets) {
        StringBuilder b = new StringBuilder("{");
        new TreeMap<>(offsets.entrySet().stream().collect(
                java.util.stream.Collectors.toMap(e -> e.getKey().partition(), Map.Entry::getValue)))
                .forEach((k, v) -> b.append(b.length() > 1 ? ", " : "").append(k).append(": ").append(v));
        return b.append('}').toString();
    }
}
