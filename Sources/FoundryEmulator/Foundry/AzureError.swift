import Foundation

/// The error bodies Azure OpenAI returns, quoted from the service.
enum AzureError {
    static func body(code: String, message: String) -> [String: Any] {
        ["error": ["code": code, "message": message]]
    }

    static var invalidKey: [String: Any] { body(
        code: "401",
        message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
    ) }

    static var invalidToken: [String: Any] { body(
        code: "401",
        message: "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."
    ) }

    static func permissionDenied(principal: String, operation: String, path: String) -> [String: Any] {
        body(
            code: "PermissionDenied",
            message: "The principal `\(principal)` lacks the required data action `Microsoft.CognitiveServices/accounts/OpenAI/deployments/\(operation)/action` to perform `POST \(path)` operation."
        )
    }

    static var deploymentNotFound: [String: Any] { body(
        code: "DeploymentNotFound",
        message: "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."
    ) }

    static func rateLimited(operation: String, apiVersion: String, tokens: Bool, seconds: Int) -> [String: Any] {
        body(
            code: "429",
            message: "Requests to the \(operation) Operation under Azure OpenAI API version \(apiVersion) have exceeded \(tokens ? "token" : "call") rate limit of your current OpenAI S0 pricing tier. Please retry after \(seconds) seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."
        )
    }

    static var contentFilter: [String: Any] {
        [
        "error": [
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": NSNull(),
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": [
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": [
                    "hate": ["filtered": true, "severity": "high"],
                    "jailbreak": ["filtered": false, "detected": false],
                    "self_harm": ["filtered": false, "severity": "safe"],
                    "sexual": ["filtered": false, "severity": "safe"],
                    "violence": ["filtered": false, "severity": "safe"],
                ],
            ],
        ] as [String: Any]
    ]
    }

    static func badRequest(_ message: String, param: String? = nil) -> [String: Any] {
        ["error": ["message": message, "type": "invalid_request_error", "param": param ?? NSNull(), "code": NSNull()] as [String: Any]]
    }

    static var serverError: [String: Any] { body(code: "InternalServerError", message: "The server had an error while processing your request. Sorry about that!") }
    static var unavailable: [String: Any] { body(code: "ServiceUnavailable", message: "The service is temporarily unable to process your request. Please try again later.") }
    static var resourceNotFound: [String: Any] { body(code: "404", message: "Resource not found") }
}

