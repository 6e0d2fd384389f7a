using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Inference.V1;
using Replay.Clients;

namespace Replay.Sources;

/// <summary>
/// Reads a request template file (JSON, comments and trailing commas allowed): the requests that an open-model or
/// closed-model run draws from, in proportion to their <c>weight</c> (smooth weighted round-robin, as nginx's
/// upstream balancer orders weighted peers, so the mix holds over any short window).
/// </summary>
/// <remarks>
/// <code>
/// { "requests": [
///   { "name": "chat", "weight": 3, "path": "/v1/chat/completions", "stream": true,
///     "headers": { "authorization": "Bearer staging" },
///     "body": { "model": "sim-llm", "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 16 } },
///   { "name": "generate", "protocol": "grpc", "stream": true, "body": { "prompt": "hi", "max_tokens": 8 } },
///   { "name": "ws-chat", "protocol": "websocket", "path": "/v1/stream", "think_ms": 50,
///     "messages": [ { "prompt": "hi", "max_tokens": 4 }, { "prompt": "more", "max_tokens": 4 } ] } ] }
/// </code>
/// Every problem is reported at once, each naming its place (<c>requests[1].protocol</c>) or the JSON line.
/// </remarks>
internal static class TemplateSource
{
    private static readonly JsonDocumentOptions s_options = new() { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip };

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="InputException">The file is missing, not JSON, or breaks the template rules (all problems listed).</exception>
    public static async Task<Workload> LoadAsync(string path, SourceSettings settings, CancellationToken cancellationToken)
    {
        if (!File.Exists(path))
        {
            throw new InputException($"template '{Path.GetFullPath(path)}' not found.");
        }

        var bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, s_options);
        }
        catch (JsonException ex)
        {
            throw new InputException($"template '{path}' is not valid JSON at line {(ex.LineNumber ?? 0) + 1}, position {(ex.BytePositionInLine ?? 0) + 1}: {FirstSentence(ex.Message)}", ex);
        }

        using (document)
        {
            var errors = new List<string>();
            var parsed = new List<(IReadOnlyList<PlannedRequest> Variants, int Weight)>();
            var spaces = new List<string>();
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("requests", out var requests)
                || requests.ValueKind != JsonValueKind.Array
                || requests.GetArrayLength() == 0)
            {
                throw new InputException($"template '{path}': the top level must be an object with a non-empty \"requests\" array.");
            }

            var i = 0;
            foreach (var element in requests.EnumerateArray())
            {
                var at = $"requests[{i}]";
                if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty("parameters", out _))
                {
                    if (ParameterSpace.Parse(element, at, errors) is { } space)
                    {
                        var cases = space.Cases();
                        var variants = new List<PlannedRequest>(cases.Count);
                        var weight = 1;
                        for (var k = 0; k < cases.Count; k++)
                        {
                            var labels = string.Join(", ", space.Parameters.Select((p, j) => $"{p.Name}={p.Levels[cases[k][j]].Label}"));
                            if (Parse(space.Instantiate(element, cases[k], k, settings.Seed), $"{at} case {k + 1} ({labels})", settings, errors) is { } variant)
                            {
                                variants.Add(variant.Item1);
                                weight = variant.Item2;
                            }
                        }

                        if (variants.Count == cases.Count)
                        {
                            parsed.Add((variants, weight));
                            spaces.Add(string.Create(CultureInfo.InvariantCulture, $"{variants[0].Route}: {space.Parameters.Count} parameters, {space.FullProduct:0} combinations, {cases.Count} {(space.All ? "(all)" : "pairwise")} cases"));
                        }
                    }
                }
                else if (Parse(element, at, settings, errors) is { } request)
                {
                    parsed.Add(([request.Item1], request.Item2));
                }

                i++;
            }

            if (errors.Count > 0)
            {
                throw new InputException($"template '{path}' has {errors.Count} problem(s):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", errors.Take(50)));
            }

            var sessions = new List<PlannedSession>();
            foreach (var request in SmoothWeightedOrder(parsed))
            {
                sessions.Add(new PlannedSession { Id = "template", OriginalId = "template", Requests = [request] });
            }

            var described = spaces.Count == 0 ? string.Empty : "; " + string.Join("; ", spaces);
            return new Workload($"template {Path.GetFileName(path)} ({parsed.Count} request(s){described})", sessions, [], 0);
        }
    }

    /// <summary>
    /// Smooth weighted round-robin over entries with several variants (a parameter space's cases): each pick of an
    /// entry takes its next variant, and the cycle repeats until every variant was picked once.
    /// </summary>
    internal static List<PlannedRequest> SmoothWeightedOrder(IReadOnlyList<(IReadOnlyList<PlannedRequest> Variants, int Weight)> entries)
    {
        var cycle = SmoothWeightedCycle(entries.Select(static (e, i) => (i, e.Weight)).ToList());
        var cycles = 1;
        foreach (var (variants, weight) in entries)
        {
            cycles = Math.Max(cycles, (variants.Count + weight - 1) / weight);
        }

        var next = new int[entries.Count];
        var order = new List<PlannedRequest>(cycle.Count * cycles);
        for (var c = 0; c < cycles; c++)
        {
            foreach (var index in cycle)
            {
                var variants = entries[index].Variants;
                order.Add(variants[next[index]++ % variants.Count]);
            }
        }

        return order;
    }

    /// <summary>
    /// One cycle of smooth weighted round-robin (nginx, <c>ngx_http_upstream_get_peer</c>): each step every entry gains
    /// its weight, the largest current value is chosen and loses the total. A cycle has Σweights picks.
    /// </summary>
    internal static List<T> SmoothWeightedCycle<T>(IReadOnlyList<(T Request, int Weight)> entries)
    {
        var total = 0;
        foreach (var e in entries)
        {
            total += e.Weight;
        }

        var current = new long[entries.Count];
        var order = new List<T>(total);
        for (var step = 0; step < total; step++)
        {
            var best = 0;
            for (var j = 0; j < entries.Count; j++)
            {
                current[j] += entries[j].Weight;
                if (current[j] > current[best])
                {
                    best = j;
                }
            }

            current[best] -= total;
            order.Add(entries[best].Request);
        }

        return order;
    }

    private static (PlannedRequest, int)? Parse(JsonElement e, string at, SourceSettings settings, List<string> errors)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{at} must be an object.");
            return null;
        }

        var before = errors.Count;
        var protocol = String(e, "protocol", at, errors) ?? "http";
        if (protocol is not ("http" or "grpc" or "websocket"))
        {
            errors.Add($"{at}.protocol must be \"http\", \"grpc\" or \"websocket\" (was \"{protocol}\").");
            return null;
        }

        var weight = 1;
        if (e.TryGetProperty("weight", out var w) && (w.ValueKind != JsonValueKind.Number || !w.TryGetInt32(out weight) || weight < 1 || weight > 10_000))
        {
            errors.Add($"{at}.weight must be an integer from 1 to 10000 (was {w.GetRawText()}).");
        }

        var stream = false;
        if (e.TryGetProperty("stream", out var s))
        {
            if (s.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                stream = s.GetBoolean();
            }
            else
            {
                errors.Add($"{at}.stream must be true or false (was {s.GetRawText()}).");
            }
        }

        var headers = new List<KeyValuePair<string, string>>();
        if (e.TryGetProperty("headers", out var h))
        {
            if (h.ValueKind != JsonValueKind.Object)
            {
                errors.Add($"{at}.headers must be an object of string values.");
            }
            else
            {
                foreach (var p in h.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.String)
                    {
                        errors.Add($"{at}.headers.{p.Name} must be a string.");
                    }
                    else
                    {
                        headers.Add(new(p.Name, p.Value.GetString()!));
                    }
                }
            }
        }

        var name = String(e, "name", at, errors);
        var path = String(e, "path", at, errors);
        if (path is not null && (path.Length == 0 || path[0] != '/'))
        {
            errors.Add($"{at}.path must start with '/' (was \"{path}\").");
        }

        PlannedRequest? request = null;
        switch (protocol)
        {
            case "http":
                request = ParseHttp(e, at, settings, errors, name, path, stream, headers);
                break;
            case "grpc":
                request = ParseGrpc(e, at, errors, name, path, stream, headers);
                break;
            default:
                request = ParseWebSocket(e, at, errors, name, path, headers);
                break;
        }

        return errors.Count > before || request is null ? null : (request, weight);
    }

    private static PlannedRequest? ParseHttp(JsonElement e, string at, SourceSettings settings, List<string> errors, string? name, string? path, bool stream, List<KeyValuePair<string, string>> headers)
    {
        var method = String(e, "method", at, errors) ?? "POST";
        path ??= "/v1/chat/completions";
        byte[]? body = null;
        SyntheticPrompt? prompt = null;
        var hasBody = e.TryGetProperty("body", out var b);
        var hasText = e.TryGetProperty("body_text", out var t);
        if (hasBody && hasText)
        {
            errors.Add($"{at}: give either body or body_text, not both.");
        }
        else if (hasBody)
        {
            body = Encoding.UTF8.GetBytes(b.GetRawText());
        }
        else if (hasText)
        {
            if (t.ValueKind != JsonValueKind.String)
            {
                errors.Add($"{at}.body_text must be a string.");
            }
            else
            {
                body = Encoding.UTF8.GetBytes(t.GetString()!);
            }
        }
        else if (HttpMethods(method))
        {
            var promptTokens = Int(e, "prompt_tokens", at, errors, 0, 1_000_000) ?? settings.PromptTokens;
            var maxTokens = Int(e, "max_tokens", at, errors, 1, 1_000_000) ?? settings.MaxTokens;
            prompt = new SyntheticPrompt(promptTokens, maxTokens, settings.Model, stream) { Text = settings.PromptText };
        }

        if ((body is not null || prompt is not null) && !headers.Exists(static h => h.Key.Equals("content-type", StringComparison.OrdinalIgnoreCase)))
        {
            headers.Add(new("content-type", "application/json"));
        }

        return new PlannedRequest
        {
            Protocol = RequestProtocol.Http,
            Method = method.ToUpperInvariant(),
            PathAndQuery = path,
            Headers = headers,
            Body = body,
            Prompt = prompt,
            Streamed = stream,
            Route = name ?? $"{method.ToUpperInvariant()} {path}",
        };

        static bool HttpMethods(string m) => !m.Equals("GET", StringComparison.OrdinalIgnoreCase) && !m.Equals("HEAD", StringComparison.OrdinalIgnoreCase);
    }

    private static PlannedRequest? ParseGrpc(JsonElement e, string at, List<string> errors, string? name, string? path, bool stream, List<KeyValuePair<string, string>> headers)
    {
        path ??= stream ? "/inference.v1.Generation/GenerateStream" : "/inference.v1.Generation/Generate";
        if (!e.TryGetProperty("body", out var b) || b.ValueKind != JsonValueKind.Object)
        {
            errors.Add($"{at}.body must be an object {{\"prompt\", \"max_tokens\", \"session_id\"?}} (an inference.v1.GenerateRequest).");
            return null;
        }

        GenerateRequest message;
        try
        {
            message = JsonParser.Default.Parse<GenerateRequest>(b.GetRawText());
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{at}.body is not an inference.v1.GenerateRequest: {ex.Message}");
            return null;
        }
        catch (InvalidJsonException ex)
        {
            errors.Add($"{at}.body is not an inference.v1.GenerateRequest: {ex.Message}");
            return null;
        }

        if (!headers.Exists(static h => h.Key.Equals("content-type", StringComparison.OrdinalIgnoreCase)))
        {
            headers.Add(new("content-type", "application/grpc"));
        }

        return new PlannedRequest
        {
            Protocol = RequestProtocol.Grpc,
            PathAndQuery = path,
            Headers = headers,
            Body = GrpcFraming.Frame(message),
            Streamed = stream,
            Route = name ?? $"gRPC {path}",
        };
    }

    private static PlannedRequest? ParseWebSocket(JsonElement e, string at, List<string> errors, string? name, string? path, List<KeyValuePair<string, string>> headers)
    {
        path ??= "/v1/stream";
        var think = Double(e, "think_ms", at, errors) ?? 0;
        if (!e.TryGetProperty("messages", out var m) || m.ValueKind != JsonValueKind.Array || m.GetArrayLength() == 0)
        {
            errors.Add($"{at}.messages must be a non-empty array (each a JSON value or a string, sent as one text message).");
            return null;
        }

        var turns = new List<WebSocketTurn>();
        var first = true;
        foreach (var message in m.EnumerateArray())
        {
            var text = message.ValueKind == JsonValueKind.String ? message.GetString()! : message.GetRawText();
            turns.Add(new WebSocketTurn(Encoding.UTF8.GetBytes(text), false, first ? 0 : think));
            first = false;
        }

        return new PlannedRequest
        {
            Protocol = RequestProtocol.WebSocket,
            Method = "GET",
            PathAndQuery = path,
            Headers = headers,
            Streamed = true,
            Route = name ?? $"WS {path}",
            Turns = turns,
        };
    }

    private static string? String(JsonElement e, string property, string at, List<string> errors)
    {
        if (!e.TryGetProperty(property, out var v))
        {
            return null;
        }

        if (v.ValueKind != JsonValueKind.String)
        {
            errors.Add($"{at}.{property} must be a string (was {v.GetRawText()}).");
            return null;
        }

        return v.GetString();
    }

    private static int? Int(JsonElement e, string property, string at, List<string> errors, int min, int max)
    {
        if (!e.TryGetProperty(property, out var v))
        {
            return null;
        }

        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var value) || value < min || value > max)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{at}.{property} must be an integer from {min} to {max} (was {v.GetRawText()})."));
            return null;
        }

        return value;
    }

    private static double? Double(JsonElement e, string property, string at, List<string> errors)
    {
        if (!e.TryGetProperty(property, out var v))
        {
            return null;
        }

        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var value) || value < 0)
        {
            errors.Add($"{at}.{property} must be a number ≥ 0 (was {v.GetRawText()}).");
            return null;
        }

        return value;
    }

    private static string FirstSentence(string message)
    {
        var i = message.IndexOf(" Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }
}
