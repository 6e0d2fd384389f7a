using Contracts.Wire;
using Gateway.Recording;
using Gateway.Routing;
using Gateway.Shaping;
using Gateway.Shaping.Tokens;
using Microsoft.Extensions.Primitives;

namespace Gateway.Exchange;

/// <summary>
/// The first step of the proxy pipeline, right after routing: gives the exchange its <see cref="Classification"/>
/// (listener, protocol, route, the model and cluster it goes to, that route and cluster's shaping plan; the client key,
/// session and LLM request on demand), which every later step reads.
/// <list type="bullet">
/// <item>When models are configured (<c>Gateway:Models</c>), the request's model (OpenAI JSON <c>model</c>; gRPC
/// metadata <c>x-model</c> or <c>GenerateRequest.model</c>; a WebSocket upgrade's <c>?model=</c> or <c>x-model</c>)
/// picks the cluster, or a fallback's when the model's cluster has no healthy destination or its circuit is open; the
/// name the backend knows is written in its place (<c>Rewrite</c>). An unknown model ends here: 404
/// <c>model_not_found</c> (gRPC NOT_FOUND), reaching no backend. <c>GET /v1/models</c> is answered from the
/// configuration. A request that names no model goes to its route's cluster.</item>
/// <item>The authenticated tenant (<see cref="ExchangeContext.Caller"/>, found by <see cref="Tenants.AuthStep"/>) becomes
/// <see cref="Classification.Tenant"/>; a tenant naming a model outside its <c>Models</c> ends here: 403
/// <c>model_not_allowed</c> (gRPC PERMISSION_DENIED).</item>
/// </list>
/// </summary>
internal sealed class ClassifyStep(RequestDelegate next, ShapingRuntime shaping, SessionResolver sessions, ModelCatalog models, ModelRouter router,
    Tenants.TenantDirectory auth, Tenants.AuthMetrics authMetrics)
{
    /// <summary>The route metadata key that turns routing by model off for one route (<c>false</c>).</summary>
    public const string RouteByModelMetadataKey = "RouteByModel";

    public Task InvokeAsync(HttpContext context)
    {
        var exchange = context.GetExchange()!;
        var route = context.GetReverseProxyFeature().Route.Config;
        var classification = new Classification(context, exchange.Listener, ExchangeProtocols.Of(context), route, sessions) { Tenant = exchange.Caller };
        exchange.Classify(classification);
        if (!models.IsEnabled || (route.Metadata?.TryGetValue(RouteByModelMetadataKey, out var byModel) == true && string.Equals(byModel, "false", StringComparison.OrdinalIgnoreCase)))
        {
            classification.Resolve(null, null, route.ClusterId, shaping.Current.PlanFor(route));
            return NeedsPrompt(context, classification) ? ReadPromptThenNextAsync(context, exchange, classification) : next(context);
        }

        if (HttpMethods.IsGet(context.Request.Method) && context.Request.Path.Equals("/v1/models", StringComparison.Ordinal) && !classification.IsWebSocket)
        {
            classification.Resolve(null, null, route.ClusterId, RoutePlan.Empty);
            return ModelList.WriteAsync(context, models,
                TenantEntryOf(classification) is { AllowedModels: not null } listed ? listed.Allows : null);
        }

        if (HttpMethods.IsGet(context.Request.Method) && !classification.IsWebSocket
            && context.Request.Path.StartsWithSegments("/v1/models", StringComparison.Ordinal, out var rest) && rest.Value is { Length: > 1 } idPath)
        {
            // OpenAI's retrieve model, answered like the list (stranger review, issue 14).
            classification.Resolve(null, null, route.ClusterId, RoutePlan.Empty);
            return ModelList.WriteOneAsync(context, models, Uri.UnescapeDataString(idPath[1..]),
                TenantEntryOf(classification) is { AllowedModels: not null } entry ? entry.Allows : null);
        }

        return RouteByModelAsync(context, exchange, classification);
    }

    private async Task RouteByModelAsync(HttpContext context, ExchangeContext exchange, Classification classification)
    {
        var route = classification.Route;
        var request = context.Request;
        string? requested;
        LlmRequest? llm = null;
        var tenantEntry = TenantEntryOf(classification);
        var enforceAllowList = tenantEntry?.AllowedModels is not null;
        if (classification.IsWebSocket)
        {
            // Stranger review B3: ?model=a&model=b (or ?model= and x-model naming different models) is refused, so the
            // model checked is the one the backend reads whichever occurrence it takes.
            var query = request.Query["model"];
            var header = request.Headers["x-model"];
            requested = First(query) ?? First(header);
            if (Conflicts(query, requested) || Conflicts(header, requested))
            {
                RefuseMismatch(exchange, classification, "The WebSocket upgrade names more than one model (?model= and x-model must name one model, once).");
                return;
            }
        }
        else
        {
            // The body is read even when x-model names the model: the name the body carries is rewritten too, and a
            // body that was read can be sent again to a fallback. Stranger review B1: it is read whatever its content
            // type (no content type, text/plain, form): vLLM (FastAPI) parses such a body as JSON, so a model named in
            // it must be routed and checked like any other.
            var options = shaping.Current.Options;
            await classification.GetBodyAsync(options.MaxInspectBytes, jsonOnly: false, exchange.ClientAborted);
            llm = await classification.GetLlmRequestAsync(options.MaxInspectBytes, options.DefaultMaxTokens, exchange.ClientAborted);
            var header = request.Headers["x-model"];
            requested = First(header) ?? llm.Model;
            if (Conflicts(header, requested) || (llm.Model is { } bodyModel && !string.Equals(bodyModel, requested, StringComparison.Ordinal)))
            {
                // Stranger review B3: the x-model header picked the model checked while the body's went to the backend.
                RefuseMismatch(exchange, classification, $"The x-model header (`{requested}`) and the body's model (`{llm.Model}`) differ; send one model name.");
                return;
            }

            if (enforceAllowList && llm.Model is null && UncheckableBody(classification, request) is { } why)
            {
                // Stranger review B1/B2: a tenant held to an allow-list must not reach a backend with a model the gateway
                // could not read (past the inspect limit, or a body that is not JSON).
                classification.Resolve(null, requested, route.ClusterId, RoutePlan.Empty, requested is null ? null : models.Find(requested));
                authMetrics.Failure(Tenants.AuthFailure.ModelUncheckable);
                exchange.Refuse(why);
                return;
            }
        }

        if (requested is null)
        {
            classification.Resolve(null, null, route.ClusterId, shaping.Current.PlanFor(route));
            await ReadPromptThenNextAsync(context, exchange, classification);
            return;
        }

        if (models.Find(requested) is not { } model)
        {
            classification.Resolve(null, requested, route.ClusterId, RoutePlan.Empty);
            // Refused before a WebSocket is accepted (404 JSON, as docs/routing.md says; it was 101 then close 1008 with
            // the name dropped), and the client's name echoed bounded (a 30 KB x-model made a 30 KB body, and 12,000 'é'
            // a gRPC trailer too large to send): stranger review, issue 14.
            exchange.Refuse(new GatewayAnswer(StatusCodes.Status404NotFound, Grpc.Core.StatusCode.NotFound, "invalid_request_error", "model_not_found",
                $"The model `{Routing.ModelCatalog.Echo(requested)}` does not exist on this gateway (GET /v1/models lists them).", RefuseUpgrade: true));
            return;
        }

        if (classification.Tenant is { } tenant && tenantEntry is { } entry && !entry.Allows(model.Name))
        {
            // The tenant's allow-list (Gateway:Tenants:{tenant}:Models), checked on the model it named, before any fallback.
            classification.Resolve(model, requested, route.ClusterId, RoutePlan.Empty, model);
            authMetrics.Failure(Tenants.AuthFailure.ModelNotAllowed);
            exchange.Refuse(new GatewayAnswer(StatusCodes.Status403Forbidden, Grpc.Core.StatusCode.PermissionDenied, GatewayErrorTypes.PermissionDenied, GatewayErrorCodes.ModelNotAllowed,
                $"Tenant '{tenant.Name}' may not call the model `{Routing.ModelCatalog.Echo(requested)}`.", RefuseUpgrade: true));
            return;
        }

        var (chosen, clusterId) = router.Choose(model, classification.IsGrpc, route.ClusterId);
        router.MoveTo(context, clusterId);
        if (!string.Equals(chosen.BackendName, requested, StringComparison.Ordinal))
        {
            ModelRouter.Rewrite(context, classification, chosen.BackendName, llm);
        }

        classification.Resolve(chosen, requested, clusterId, shaping.Current.PlanFor(route, clusterId), model);
        await ReadPromptThenNextAsync(context, exchange, classification);
    }

    /// <summary>The authenticated tenant's entry in the current authentication state (its allow-list), or null without one.</summary>
    private Tenants.TenantEntry? TenantEntryOf(Classification classification) =>
        classification.Tenant is { } caller && auth.Current.Tenants.TryGetValue(caller.Name, out var entry) ? entry : null;

    /// <summary>
    /// Whether the request's cluster picks its replica by prompt prefix and session (<c>InferenceAware</c>); a WebSocket
    /// has no prompt in its upgrade.
    /// </summary>
    private static bool NeedsPrompt(HttpContext context, Classification classification) =>
        !classification.IsWebSocket
        && string.Equals(context.GetReverseProxyFeature().Cluster?.Config.LoadBalancingPolicy, Routing.InferenceAware.InferenceAwarePolicy.PolicyName, StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Reads the body when <see cref="NeedsPrompt"/> (once, as every step reads it), and the session id (the
    /// <c>InferenceAware</c> policy keeps a conversation on its replica by it), then runs the next step.
    /// </summary>
    private async Task ReadPromptThenNextAsync(HttpContext context, ExchangeContext exchange, Classification classification)
    {
        if (NeedsPrompt(context, classification))
        {
            if (classification.Body is null)
            {
                await classification.GetBodyAsync(shaping.Current.Options.MaxInspectBytes, jsonOnly: !classification.IsGrpc, exchange.ClientAborted);
            }

            // Also when the body was already read (a model named in it): the session term must not depend on a
            // recording or a rate-limit policy having asked for the session first (stranger review, issue 14: without
            // a recording, 8 of 12 short-first-turn conversations changed replica).
            await classification.GetSessionIdAsync(exchange.ClientAborted);
        }

        await next(context);
    }

    /// <summary>Whether <paramref name="values"/> holds a non-empty value other than <paramref name="chosen"/>.</summary>
    private static bool Conflicts(StringValues values, string? chosen)
    {
        for (var i = 0; i < values.Count; i++)
        {
            if (!string.IsNullOrEmpty(values[i]) && !string.Equals(values[i], chosen, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    private void RefuseMismatch(ExchangeContext exchange, Classification classification, string message)
    {
        authMetrics.Failure(Tenants.AuthFailure.ModelMismatch);
        classification.Resolve(null, null, classification.Route.ClusterId, RoutePlan.Empty);
        exchange.Refuse(new GatewayAnswer(StatusCodes.Status400BadRequest, Grpc.Core.StatusCode.InvalidArgument, "invalid_request_error", GatewayErrorCodes.ModelMismatch,
            message, RefuseUpgrade: true));
    }

    /// <summary>
    /// Why the body's model could not be checked, for a tenant with an allow-list whose request named none the gateway
    /// could read: the body was past <c>Gateway:Shaping:MaxInspectBytes</c> (413), or it is not a JSON object (400); null
    /// when the request simply names no model (no body, or a JSON object without <c>model</c>).
    /// </summary>
    private GatewayAnswer? UncheckableBody(Classification classification, HttpRequest request)
    {
        if (classification.BodyUninspected)
        {
            return new GatewayAnswer(StatusCodes.Status413PayloadTooLarge, Grpc.Core.StatusCode.ResourceExhausted, "invalid_request_error", GatewayErrorCodes.ModelUncheckable,
                $"The body is larger than the gateway inspects (Gateway:Shaping:MaxInspectBytes = {shaping.Current.Options.MaxInspectBytes} bytes), so the model it names cannot be checked against this tenant's allowed models; send x-model or a smaller body.");
        }

        var body = classification.Body is { } read ? read.Span : default;
        if (body.IsEmpty || classification.IsGrpc)
        {
            return null;
        }

        return IsJsonObject(body)
            ? null
            : new GatewayAnswer(StatusCodes.Status400BadRequest, Grpc.Core.StatusCode.InvalidArgument, "invalid_request_error", GatewayErrorCodes.ModelUncheckable,
                "The body is not a JSON object, so the model it names cannot be checked against this tenant's allowed models; send JSON (or name the model in x-model).");
    }

    private static bool IsJsonObject(ReadOnlySpan<byte> body)
    {
        var reader = new System.Text.Json.Utf8JsonReader(body);
        try
        {
            if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
            {
                return false;
            }

            reader.Skip();
            return !reader.Read();
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    private static string? First(StringValues values) => values.Count > 0 && !string.IsNullOrEmpty(values[0]) ? values[0] : null;
}
