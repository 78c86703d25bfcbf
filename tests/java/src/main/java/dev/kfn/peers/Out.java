package dev.kfn.peers;

import java.util.Collection;
import java.util.HexFormat;
import java.util.stream.Collectors;

/** Hand-written JSON lines on stdout, messages on stderr, and exits. */
final class Out {
    private Out() {}

    /**
     * A byte-array consumer of {@code bootstrap} with {@code extra} settings: no
     * auto-commit, from the earliest offset, never creating a topic. Exits naming
     * {@code who} when the client refuses the settings.
     */
    static org.apache.kafka.clients.consumer.KafkaConsumer<byte[], byte[]> consumer(
            String who, String bootstrap, java.util.Properties extra) {
        var p = new java.util.Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        p.put("allow.auto.create.topics", "false");
        p.put("key.deserializer", org.apache.kafka.common.serialization.ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", org.apache.kafka.common.serialization.ByteArrayDeserializer.class.getName());
        p.putAll(extra);
        try {
            return new org.apache.kafka.clients.consumer.KafkaConsumer<>(p);
        } catch (Exception e) {
            throw fail(1, who + ": cannot create the consumer: " + describe(e));
        }
    }

    /** Prints one JSON object (already formatted) as a line and flushes stdout. */
    static void line(String json) {
        System.out.println(json);
        System.out.flush();
    }

    /** A JSON string literal, or {@code null} for a null string. */
    static String str(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /** A JSON array of numbers, in the collection's order. */
    static String ints(Collection<Integer> xs) {
        return xs.stream().map(String::valueOf).collect(Collectors.joining(",", "[", "]"));
    }

    static String hex(byte[] bytes) {
        return bytes == null ? "" : HexFormat.of().formatHex(bytes);
    }

    static byte[] unhex(String hex) {
        return HexFormat.of().parseHex(hex);
    }

    /** Prints the message on stderr and exits with the code. */
    static RuntimeException fail(int code, String message) {
        System.out.flush();
        System.err.println(message);
        System.err.flush();
        System.exit(code);
        return new IllegalStateException("unreachable");
    }

    static String describe(Throwable t) {
        StringBuilder b = new StringBuilder(t.toString());
        for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
            b.append(" caused by ").append(c);
        }
        return b.toString();
    }

    static int intArg(String[] args, int i, String name) {
        try {
            return Integer.parseInt(args[i]);
        } catch (NumberFormatException e) {
            throw fail(2, name + " must be an integer, got " + str(args[i]));
        }
    }
}
