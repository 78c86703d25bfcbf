package dev.kfn.peers;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.common.TopicPartition;

/**
 * A consumer group member that waits for a stable assignment.
 *
 * <pre>GroupMember BOOTSTRAP TOPIC GROUP EXPECTED_PARTITIONS TIMEOUT_SECONDS [classic|consumer]</pre>
 *
 * With {@code classic} (the default) it joins with the classic protocol offering only
 * the "range" assignor; with {@code consumer} it uses the KIP-848 protocol (server-side
 * assignment). It polls until it owns exactly EXPECTED_PARTITIONS partitions and that
 * has not changed for 3 s, printing {"assigned":[...]} on each change and
 * {"final":[...]} at the end, then closes (leaving the group). Offsets are never
 * committed. On timeout it exits 1 with the last assignment on stderr.
 */
public final class GroupMember {
    private static final long STABLE_MS = 3_000;

    private final TreeSet<Integer> owned = new TreeSet<>();
    private long lastChange = System.nanoTime();

    public static void main(String[] args) {
        if (args.length != 5 && args.length != 6) {
            throw Out.fail(2, "usage: GroupMember BOOTSTRAP TOPIC GROUP EXPECTED_PARTITIONS TIMEOUT_SECONDS [classic|consumer]");
        }
        int expected = Out.intArg(args, 3, "EXPECTED_PARTITIONS");
        int timeoutSeconds = Out.intArg(args, 4, "TIMEOUT_SECONDS");
        String protocol = args.length == 6 ? args[5].toLowerCase(Locale.ROOT) : "classic";
        if (!protocol.equals("classic") && !protocol.equals("consumer")) {
            throw Out.fail(2, "PROTOCOL must be classic or consumer, got " + Out.str(args[5]));
        }
        new GroupMember().run(args[0], args[1], args[2], expected, timeoutSeconds, protocol);
    }

    private void run(String bootstrap, String topic, String group, int expected, int timeoutSeconds, String protocol) {
        Properties p = new Properties();
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            // The consumer protocol refuses this setting: the broker assigns.
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
        }
        KafkaConsumer<byte[], byte[]> consumer = Out.consumer("GroupMember", bootstrap, p);
        long deadline = System.nanoTime() + Duration.ofSeconds(timeoutSeconds).toNanos();
        List<Integer> printed = List.of();
        try {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    change(partitions, false);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    change(partitions, true);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> partitions) {
                    change(partitions, false);
                }
            });
            while (true) {
                consumer.poll(Duration.ofMillis(200));
                List<Integer> now = new ArrayList<>(owned);
                if (!now.equals(printed)) {
                    Out.line("{\"assigned\":" + Out.ints(now) + "}");
                    printed = now;
                }
                long t = System.nanoTime();
                if (now.size() == expected && (t - lastChange) / 1_000_000 >= STABLE_MS) {
                    break;
                }
                if (t - deadline >= 0) {
                    consumer.close(Duration.ofSeconds(5));
                    throw Out.fail(1, "GroupMember: timeout after " + timeoutSeconds + " s waiting for a stable "
                            + expected + "-partition assignment of " + topic + " in group " + group
                            + "; last assignment " + Out.ints(now));
                }
            }
            Out.line("{\"final\":" + Out.ints(printed) + "}");
        } catch (Exception e) {
            consumer.close(Duration.ZERO);
            throw Out.fail(1, "GroupMember: " + Out.describe(e) + "; last assignment " + Out.ints(new ArrayList<>(owned)));
        }
        consumer.close(Duration.ofSeconds(10));
    }

    private void change(Collection<TopicPartition> partitions, boolean add) {
        for (TopicPartition tp : partitions) {
            if (add) {
                owned.add(tp.partition());
            } else {
                owned.remove(tp.partition());
            }
        }
        lastChange = System.nanoTime();
    }
}
