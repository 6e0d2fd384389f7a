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
