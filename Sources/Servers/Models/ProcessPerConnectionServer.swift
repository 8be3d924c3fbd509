import Kernel

/// Placeholder until the model is built: refuses to start, naming the model.
public enum ProcessPerConnectionServer {
    public static func run(_ context: ServerContext) throws {
        throw ValueError("--model \(context.config.model.rawValue) is not built yet")
    }
}
