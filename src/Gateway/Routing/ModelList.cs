using System.Text.Json;

namespace Gateway.Routing;

/// <summary>
/// <c>GET /v1/models</c> answered by the gateway when models are configured: every configured model and alias in
/// OpenAI's shape (<c>{"object":"list","data":[{"id","object":"model","created","owned_by"}]}</c>), an alias carrying
/// <c>"root"</c> (the model it names), as vLLM lists served model names. An authenticated tenant with a model
/// allow-list (<c>Gateway:Tenants:{tenant}:Models</c>) sees only the models it may call.
/// </summary>
internal static class ModelList
{
    /// <param name="context">The request.</param>
    /// <param name="catalog">The configured models.</param>
    /// <param name="allows">Whether the caller may call a model (by its configured name); null: every model.</param>
    public static async Task WriteAsync(HttpContext context, ModelCatalog catalog, Func<string, bool>? allows = null)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (var model in catalog.Models)
            {
                if (allows is not null && !allows(model.Name))
                {
                    continue;
                }

                Entry(w, model.Name, model.Name);
                foreach (var alias in model.Options.Aliases)
                {
                    Entry(w, alias, model.Name);
                }
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    /// <summary>
    /// <c>GET /v1/models/{id}</c> (OpenAI's retrieve model): the model or alias named <paramref name="id"/> in the shape
    /// of one <see cref="WriteAsync"/> entry; 404 <c>model_not_found</c> (the name echoed bounded) for a name that is not
    /// configured or that the caller's allow-list excludes (as <c>/v1/models</c> does not list it).
    /// </summary>
    public static async Task WriteOneAsync(HttpContext context, ModelCatalog catalog, string id, Func<string, bool>? allows = null)
    {
        if (catalog.Find(id) is not { } model || (allows is not null && !allows(model.Name)))
        {
            await Exchange.ErrorResponses.WriteAsync(context, StatusCodes.Status404NotFound, Grpc.Core.StatusCode.NotFound, "invalid_request_error", "model_not_found",
                $"The model `{ModelCatalog.Echo(id)}` does not exist on this gateway (GET /v1/models lists them).");
            return;
        }

        var buffer = new System.Buffers.ArrayBufferWriter<byte>(128);
        using (var w = new Utf8JsonWriter(buffer))
        {
            Entry(w, id, model.Name);
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    private static void Entry(Utf8JsonWriter w, string id, string root)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "model");
        w.WriteNumber("created", 0);
        w.WriteString("owned_by", "sluice");
        w.WriteString("root", root);
        w.WriteEndObject();
    }
}
