package kfn.bench;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.streams.kstream.ValueMapper;

/**
 * What the passthrough does to each value, as the Rust and Python peers do: split the Confluent
 * header (magic byte 0, 4-byte schema id), decode the Avro body into a {@link GenericRecord} with
 * the writer's schema (fetched from the registry by id, once) resolved to the output schema,
 * encode it with the output schema, and frame it with the output subject's id.
 *
 * <p>Decimals and timestamps are decoded into {@code BigDecimal} and {@code Instant} (Avro's
 * logical-type conversions), as the Rust peer decodes into its typed event and Python's
 * AvroDeserializer into {@code Decimal} and {@code datetime}: a record a service could act on.
 *
 * <p>Streams shares one mapper among its stream threads: each thread gets its own decoder,
 * encoder, buffer and readers.
 */
final class Reframe implements ValueMapper<byte[], byte[]> {
    private final SchemaRegistry registry;
    private final byte[] header;
    private final Schema output;
    private final GenericData data = new GenericData();
    private final ThreadLocal<Codec> codecs = ThreadLocal.withInitial(Codec::new);

    Reframe(SchemaRegistry registry, int outputId, Schema output) {
        this.registry = registry;
        this.header = ByteBuffer.allocate(5).put((byte) 0).putInt(outputId).array();
        this.output = output;
        data.addLogicalTypeConversion(new Conversions.DecimalConversion());
        data.addLogicalTypeConversion(new TimeConversions.TimestampMillisConversion());
    }

    @Override
    public byte[] apply(byte[] value) {
        if (value == null || value.length < 5 || value[0] != 0) {
            throw new IllegalArgumentException("not a Confluent-framed Avro value");
        }
        int id = ByteBuffer.wrap(value, 1, 4).getInt();
        Codec codec = codecs.get();
        try {
            GenericDatumReader<GenericRecord> reader = codec.readers.get(id);
            if (reader == null) {
                Schema writer = new Schema.Parser().parse(registry.schema(id));
                reader = new GenericDatumReader<>(writer, output, data);
                codec.readers.put(id, reader);
            }
            codec.decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, codec.decoder);
            GenericRecord record = reader.read(null, codec.decoder);
            codec.out.reset();
            codec.out.write(header);
            codec.encoder = EncoderFactory.get().binaryEncoder(codec.out, codec.encoder);
            codec.writer.write(record, codec.encoder);
            codec.encoder.flush();
            return codec.out.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException("schema " + id, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while fetching schema " + id, e);
        }
    }

    /** One stream thread's codec state. */
    private final class Codec {
        final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
        final GenericDatumWriter<GenericRecord> writer = new GenericDatumWriter<>(output, data);
        final ByteArrayOutputStream out = new ByteArrayOutputStream(256);
        BinaryDecoder decoder;
        BinaryEncoder encoder;
    }
}
