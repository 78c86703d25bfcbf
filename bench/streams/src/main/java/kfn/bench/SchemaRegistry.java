package kfn.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

/**
 * The two Schema Registry calls a hand-written Avro service makes (Confluent's REST API, here
 * served by kfn's registry): register its output schema, and fetch a writer's schema by the id in
 * a record's header. Blocking: each happens once per schema, not per record.
 */
final class SchemaRegistry {
    private static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";

    private final String url;
    // HTTP/1.1: the JDK client otherwise offers an h2c upgrade on every plain-text request.
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final ObjectMapper json = new ObjectMapper();

    /** A client of the registry at {@code url} ({@code http://host:port}). */
    SchemaRegistry(String url) {
        this.url = url.replaceAll("/+$", "");
    }

    /** Registers {@code schema} under {@code subject}; returns its id. */
    int register(String subject, String schema) throws IOException, InterruptedException {
        String body = json.writeValueAsString(json.createObjectNode().put("schema", schema));
        String path = "/subjects/" + URLEncoder.encode(subject, StandardCharsets.UTF_8) + "/versions";
        JsonNode id = call(HttpRequest.newBuilder(URI.create(url + path))
                .header("Content-Type", CONTENT_TYPE)
                .POST(HttpRequest.BodyPublishers.ofString(body)), path).get("id");
        if (id == null || !id.canConvertToInt()) {
            throw new IOException("POST " + path + ": no id in the registry's answer");
        }
        return id.intValue();
    }

    /** The schema text registered with {@code id}. */
    String schema(int id) throws IOException, InterruptedException {
        String path = "/schemas/ids/" + id;
        JsonNode schema = call(HttpRequest.newBuilder(URI.create(url + path)).GET(), path).get("schema");
        if (schema == null || !schema.isTextual()) {
            throw new IOException("GET " + path + ": no schema in the registry's answer");
        }
        return schema.textValue();
    }

    private JsonNode call(HttpRequest.Builder request, String path) throws IOException, InterruptedException {
        HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() / 100 != 2) {
            throw new IOException(path + ": " + response.statusCode() + " " + response.body());
        }
        return json.readTree(response.body());
    }
}
