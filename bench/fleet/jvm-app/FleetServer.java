// An HTTP service for the edgetrim fleet on 127.0.0.1:18106, on the JDK's built-in server.
// GET / returns a fixed greeting. GET /info returns the Java specification version, a CRC-32
// from java.util.zip and a SHA-256 digest from the JDK's security providers.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.zip.CRC32;

public final class FleetServer {
    private static final String HOST = "127.0.0.1";
    private static final int PORT = 18106;

    public static void main(String[] args) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(HOST, PORT), 16);
        server.createContext("/", FleetServer::handle);
        server.start();
        // The JVM runs shutdown hooks on SIGTERM, so `docker stop` ends it with status 143.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop(0)));
        System.err.println("jvm-app listening on " + HOST + ":" + PORT);
    }

    private static void handle(HttpExchange exchange) throws IOException {
        String path = exchange.getRequestURI().getPath();
        int status = 200;
        String body;
        if (path.equals("/")) {
            body = "jvm-app: hello from com.sun.net.httpserver\n";
        } else if (path.equals("/info")) {
            body = info();
        } else {
            status = 404;
            body = "not found: " + path + "\n";
        }
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    private static String info() {
        byte[] input = "jvm-app".getBytes(StandardCharsets.UTF_8);
        CRC32 crc = new CRC32();
        crc.update(input);
        String sha256;
        try {
            sha256 = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(input));
        } catch (NoSuchAlgorithmException e) {
            sha256 = "unavailable: " + e.getMessage();
        }
        return "java.specification.version=" + System.getProperty("java.specification.version") + "\n"
            + "crc32=" + Long.toHexString(crc.getValue()) + "\n"
            + "sha256=" + sha256 + "\n";
    }
}
