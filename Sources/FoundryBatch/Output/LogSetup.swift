import Foundation
import Logging

/// Where the CLI's log lines go: standard error, at `FOUNDRY_BATCH_LOG_LEVEL` (default notice).
public enum LogSetup {
    /// Bootstraps swift-log once per process, before anything logs.
    public static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = environment["FOUNDRY_BATCH_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .notice
            return handler
        }
    }
}
