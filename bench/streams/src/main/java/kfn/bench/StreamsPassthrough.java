package kfn.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TopologyConfig;
import org.apache.kafka.streams.errors.LogAndContinueProcessingExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The OrderCreated passthrough as a Java team would write it on Kafka Streams with
 * {@code processing.guarantee=exactly_once_v2}: the exactly-once peer of kfn's exactly_once.
 *
 * <p>Topology: stream(BENCH_INPUT, bytes) → mapValues({@link Reframe}: decode the Confluent-framed
 * Avro value with its writer's schema, encode it with BENCH_SCHEMA registered for BENCH_OUTPUT) →
 * to(BENCH_OUTPUT), the input's key kept. Streams commits the consumed offsets and the produced
 * records in one transaction every commit.interval.ms (100 ms by default under exactly-once).
 *
 * <p>Settings from the environment, like the other peers: BENCH_BROKERS, BENCH_INPUT,
 * BENCH_OUTPUT, BENCH_GROUP (the application.id), BENCH_REGISTRY, BENCH_SCHEMA (the .avsc file),
 * BENCH_STATE_DIR (Streams' state.dir) and, optionally, BENCH_READY_FILE (created once the
 * instance first reaches RUNNING, i.e. holds its tasks). Runs until SIGTERM or SIGINT, which
 * close it cleanly; exits with status 1 if Streams stops by itself (a stream thread died).
 */
public final class StreamsPassthrough {
    private static final Logger LOG = LoggerFactory.getLogger(StreamsPassthrough.class);

    private StreamsPassthrough() {}

    public static void main(String[] args) throws Exception {
        String input = env("BENCH_INPUT");
        String output = env("BENCH_OUTPUT");
        String schemaText = Files.readString(Path.of(env("BENCH_SCHEMA")));
        SchemaRegistry registry = new SchemaRegistry(env("BENCH_REGISTRY"));
        // Registered (or found) like the Rust and Python peers do: the id the output records carry.
        int outputId = registry.register(output + "-value", schemaText);
        Reframe reframe = new Reframe(registry, outputId, new Schema.Parser().parse(schemaText));

        Properties config = config();
        // The builder gets the config too, so the topology's own settings are the application's.
        StreamsBuilder builder = new StreamsBuilder(new TopologyConfig(new StreamsConfig(config)));
        builder.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .mapValues(reframe)
                .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        KafkaStreams streams = new KafkaStreams(builder.build(), config);
        AtomicBoolean closing = new AtomicBoolean();
        CountDownLatch stopped = new CountDownLatch(1);
        String readyFile = System.getenv("BENCH_READY_FILE");
        AtomicBoolean ready = new AtomicBoolean();
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && readyFile != null && ready.compareAndSet(false, true)) {
                try {
                    Files.writeString(Path.of(readyFile), "running\n");
                } catch (IOException e) {
                    LOG.error("cannot write {}", readyFile, e);
                }
            }
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            LOG.error("stream thread failed; stopping", e);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            closing.set(true);
            // Aborts the open transaction and leaves the group; the JVM exits when this returns.
            boolean closed = streams.close(Duration.ofSeconds(10));
            LOG.info(closed ? "closed" : "not closed within 10 s");
        }, "close-streams"));
        streams.start();
        LOG.info("started: {} -> {} (schema id {}), application.id {}", input, output, outputId, env("BENCH_GROUP"));
        stopped.await();
        if (!closing.get()) {
            LOG.error("Kafka Streams stopped by itself (state {})", streams.state());
            System.exit(1);
        }
    }

    private static Properties config() {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("BENCH_GROUP"));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("BENCH_BROKERS"));
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // One stream thread: one consumer and one transactional producer per process, as one kfn
        // replica is one process with one member and one transactional producer; more parallelism
        // is more processes (streams-eos-2), as for kfn.
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        // commit.interval.ms stays at its exactly-once default, 100 ms: one transaction per 100 ms.
        p.put(StreamsConfig.STATE_DIR_CONFIG, env("BENCH_STATE_DIR"));
        // A record that fails to decode is logged and skipped, as the Rust peer does.
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueProcessingExceptionHandler.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // The group timing every peer of the benchmark uses.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 2000);
        // Every producer of the benchmark compresses with lz4 (kfn's default).
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        return p;
    }

    private static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException(name + " is not set");
        }
        return value;
    }
}
