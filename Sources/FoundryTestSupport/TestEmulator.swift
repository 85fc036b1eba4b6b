import FoundryEmulator

extension EmulatorConfiguration {
    /// The demo configuration for a test: the demo app (tenant ``demoTenantID``, client
    /// ``demoClientID``) signing in with `secret`, and `apiKeys` accepted as `api-key`.
    ///
    /// Every test target starts its emulators from here, on port 0, so that none of them
    /// grows a configuration of its own that drifts from the others.
    public static func forTests(
        secret: String, apiKeys: Set<String> = [], _ change: (inout EmulatorConfiguration) -> Void = { _ in }
    ) -> EmulatorConfiguration {
        var configuration = EmulatorConfiguration.demo(secret: secret)
        configuration.apiKeys = apiKeys
        change(&configuration)
        return configuration
    }
}
