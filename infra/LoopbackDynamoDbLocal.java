import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * DynamoDB Local on 127.0.0.1 only, for infra/stand-ins.ts (docs/local-server.md, "Stand-ins").
 *
 * DynamoDBLocal.jar has no option for the address it listens on: its DynamoDBProxyServer builds
 * a Jetty Server with `new Server(port)`, which listens on every interface. This launcher builds
 * the same server from the same command line (ServerRunner.createServerFromCommandLineArgs), sets
 * the host of its Jetty connectors to 127.0.0.1 before it starts, and then starts it. It sends no
 * telemetry (ServerRunner.main's telemetry set-up is not called).
 *
 * It ignores SIGINT and SIGHUP, and stops when its standard input ends: the Node process that started it holds the other
 * end of that pipe, so DynamoDB Local never outlives it, however it ends (even SIGKILL).
 *
 * Run with Java 17's single-file source launcher: `java -cp <jar and its libs> this-file args`.
 */
public class LoopbackDynamoDbLocal {
  public static void main(String[] args) throws Exception {
    // Ctrl+C and a closed terminal reach the whole process group: the Node process that started
    // this one stops it after what uses it, so it does not die of them first.
    for (String name : new String[] {"INT", "HUP"}) {
      sun.misc.Signal.handle(new sun.misc.Signal(name), sun.misc.SignalHandler.SIG_IGN);
    }
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    Server jetty = null;
    for (Field field : DynamoDBProxyServer.class.getDeclaredFields()) {
      if (Server.class.isAssignableFrom(field.getType())) {
        field.setAccessible(true);
        jetty = (Server) field.get(proxy);
      }
    }
    if (jetty == null || jetty.getConnectors().length == 0) {
      throw new IllegalStateException("DynamoDB Local's Jetty server was not found");
    }
    for (Connector connector : jetty.getConnectors()) {
      ((ServerConnector) connector).setHost("127.0.0.1");
    }
    proxy.start();
    System.out.println("listening on 127.0.0.1");
    System.out.flush();
    while (System.in.read() != -1) {
      // Nothing is ever sent: the loop ends when the parent process does.
    }
    Runtime.getRuntime().halt(0);
  }
}
