using Microsoft.AspNetCore.Http;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>An error answered to a client, in OpenAI's shape (<c>{"error":{"message","type","param","code"}}</c>).</summary>
/// <param name="Status">HTTP status code.</param>
/// <param name="Message">Human-readable explanation, naming the field and the value found where there is one.</param>
/// <param name="Type">OpenAI error type: <c>invalid_request_error</c> (4xx) or <c>server_error</c> (5xx).</param>
/// <param name="Code">Stable machine-readable code (<c>invalid_json</c>, <c>queue_full</c>, …).</param>
/// <param name="Param">The offending request field, if any.</param>
internal readonly record struct ApiError(int Status, string Message, string Type, string Code, string? Param = null)
{
    public const string InvalidRequest = "invalid_request_error";
    public const string ServerError = "server_error";

    public static ApiError BadRequest(string message, string code, string? param = null) =>
        new(StatusCodes.Status400BadRequest, message, InvalidRequest, code, param);

    /// <summary>The error for a request the engine did not accept.</summary>
    public static ApiError ForRefusal(AdmissionResult result, SimOptions options) => result switch
    {
        AdmissionResult.QueueFull => new(StatusCodes.Status503ServiceUnavailable,
            $"The server is overloaded: all {options.Slots} slots are busy and the queue ({options.Queue}) is full. Retry later.",
            ServerError, "queue_full"),
        AdmissionResult.Collapsed => Collapsed(),
        _ => ShuttingDown(),
    };

    /// <summary>
    /// The 404 for a request naming a model the server does not serve. vLLM's message ("The model `X` does not
    /// exist."), with OpenAI's <c>type</c> and <c>code</c> (<c>invalid_request_error</c>, <c>model_not_found</c>) that
    /// OpenAI clients and the gateway key on; vLLM itself sends <c>"type":"NotFoundError","code":404</c>.
    /// </summary>
    public static ApiError ModelNotFound(string model) => new(StatusCodes.Status404NotFound,
        $"The model `{model}` does not exist.", InvalidRequest, ModelNotFoundCode, "model");

    /// <summary>The error code of <see cref="ModelNotFound"/>.</summary>
    public const string ModelNotFoundCode = "model_not_found";

    public static ApiError Collapsed() => new(StatusCodes.Status500InternalServerError,
        "The server has collapsed (simulated out-of-memory) and is restarting.", ServerError, "server_collapsed");

    public static ApiError ShuttingDown() => new(StatusCodes.Status503ServiceUnavailable,
        "The server is shutting down.", ServerError, "shutting_down");

    public ErrorResponse ToResponse() => new(new ErrorBody(Message, Type, Param, Code));
}
