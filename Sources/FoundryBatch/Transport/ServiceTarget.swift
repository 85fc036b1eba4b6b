import FoundryAuth
import Foundation

/// How requests prove who sends them.
public enum RequestAuthorization: Sendable {
    /// `api-key: <key>` (Azure) — from `AZURE_OPENAI_API_KEY`.
    case apiKey(String)
    /// `Authorization: Bearer <token>` from the run's shared token provider.
    case bearer(TokenProvider)
    case none

    /// Whether requests carry a key or a token, which may travel only over https or to loopback.
    var carriesSecret: Bool {
        if case .none = self { return false }
        return true
    }
}

/// Where a run sends its requests: the endpoint, the API style, and the authorization.
public struct ServiceTarget: Sendable {
    /// `https://my-foundry.openai.azure.com`, or an OpenAI-compatible base such as `http://localhost:8000/v1`.
    public var baseURL: String
    /// With an API version: `/openai/deployments/{d}/...?api-version=`; without: `/openai/v1/...`.
    public var apiVersion: String?
    public var authorization: RequestAuthorization

    public init(baseURL: String, apiVersion: String?, authorization: RequestAuthorization) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.apiVersion = apiVersion
        self.authorization = authorization
    }

    /// Whether the base URL already names an API root (`.../v1`), as OpenAI-compatible servers do.
    var hasOwnPath: Bool {
        guard let url = URL(string: baseURL) else { return false }
        return !url.path.isEmpty && url.path != "/"
    }

    /// The URL a row of `api` for `deployment` is posted to.
    ///
    /// With `api_version`, always Azure's deployment route under the base, whatever path the
    /// base has (an API Management gateway: `https://apim.example/aoai/openai/deployments/...`).
    /// Without: `{base}/{api}` when the base names its own API root, else `{base}/openai/v1/{api}`.
    public func url(api: ServiceAPI, deployment: String) -> String {
        guard let apiVersion else {
            return hasOwnPath ? "\(baseURL)/\(api.path)" : "\(baseURL)/openai/v1/\(api.path)"
        }
        let version = apiVersion.addingPercentEncoding(withAllowedCharacters: Self.queryValueAllowed) ?? apiVersion
        if api == .responses { return "\(baseURL)/openai/responses?api-version=\(version)" }
        let name = deployment.addingPercentEncoding(withAllowedCharacters: Self.pathSegmentAllowed) ?? deployment
        return "\(baseURL)/openai/deployments/\(name)/\(api.path)?api-version=\(version)"
    }

    /// Characters left as they are in one path segment: a `/` or `?` in a deployment name
    /// must not change the route.
    static let pathSegmentAllowed: CharacterSet = {
        var set = CharacterSet.urlPathAllowed
        set.remove(charactersIn: "/?#;")
        return set
    }()

    static let queryValueAllowed: CharacterSet = {
        var set = CharacterSet.urlQueryAllowed
        set.remove(charactersIn: "&=+#")
        return set
    }()
}
