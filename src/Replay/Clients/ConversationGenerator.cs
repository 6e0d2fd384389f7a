using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Replay.Clients;

/// <summary>
/// Writes the user's next turn of a generated conversation with a model (<c>--generate-with URL</c>, any
/// OpenAI-compatible endpoint, the simulator included), and caches every turn by seed so that a run repeats exactly.
/// </summary>
/// <remarks>
/// <para>Conversation <c>c</c> of a run opens with one of <see cref="Openers"/>, drawn by (<c>--seed</c>, c). After
/// each answer of the target the generator is sent the transcript so far after <see cref="Instruction"/> (a system
/// message), with temperature 0 and a per-turn seed, and its answer (trimmed, at most 2,000 characters) becomes the
/// user's next message. The target is then sent the whole conversation (every earlier user and assistant message), so
/// sessions grow as a real user's do.</para>
/// <para>Cache: <c>--generate-cache DIR</c> holds one JSON-lines file per (generator URL, model, instruction, seed),
/// a line per generated turn (<c>{"c":…,"t":…,"h":…,"text":…}</c>), keyed on the conversation so far: <c>h</c> is the
/// SHA-256 of the transcript the generator was sent, the target's real answers included. A turn is taken from the
/// cache only when this run's conversation is the same up to it, so a cached turn never answers an answer the target
/// did not give; with a target that answers the same, a second run with the same seed sends the same user turns
/// whatever the generator would answer now. <see cref="Digest"/> (SHA-256 over every user turn, by conversation and
/// turn) lets two runs be compared.</para>
/// <para>A generator call that fails (an error status, no answer, a timeout) is counted, and its first reason kept for
/// the report (<see cref="FirstFailure"/>); the runner fails the turns it could not send.</para>
/// </remarks>
internal sealed class ConversationGenerator : IUserTurns, IDisposable
{
    /// <summary>What the generator is asked to do.</summary>
    public const string Instruction = "You are the user in the conversation below, talking to an AI assistant. Write the user's next message only: one short, natural follow-up to the assistant's last answer.";

    /// <summary>Conversation openers.</summary>
    internal static readonly string[] Openers =
    [
        "Can you explain how a hash map works?",
        "What should I pack for a week of hiking in the rain?",
        "Help me write a polite email asking for a deadline extension.",
        "Why is the sky blue?",
        "Suggest a simple dinner I can cook in twenty minutes.",
        "How do I start learning to play the guitar?",
        "What is the difference between TCP and UDP?",
        "Summarize the causes of the French Revolution.",
        "Give me three ideas for a birthday party for a ten-year-old.",
        "How can I make my morning routine more productive?",
        "Explain compound interest with an example.",
        "What are good practices for naming variables in code?",
    ];

    private const int MaxTurnChars = 2000;
    private readonly HttpClient _client;
    private readonly Uri _endpoint;
    private readonly string _model;
    private readonly int _seed;
    private readonly int _maxTokens;
    private readonly string? _cacheFile;
    private readonly ConcurrentDictionary<(long Conversation, int Turn), string> _turns = new();
    private readonly ConcurrentDictionary<(long Conversation, int Turn, string History), string> _cache = new();
    private string? _firstFailure;
    private readonly Lock _writeGate = new();
    private long _generated;
    private long _cacheHits;
    private long _failures;

    /// <summary>Creates the generator.</summary>
    /// <param name="baseUrl">The OpenAI-compatible base URL (<c>/v1/chat/completions</c> is added).</param>
    /// <param name="model">The model field sent to the generator.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="maxTokens">Most tokens of a generated user turn.</param>
    /// <param name="cacheDirectory">Where generated turns are cached (null: no cache).</param>
    /// <param name="timeout">Bound of each generator call.</param>
    public ConversationGenerator(Uri baseUrl, string model, int seed, int maxTokens, string? cacheDirectory, TimeSpan timeout)
    {
        _endpoint = new Uri(baseUrl, "v1/chat/completions");
        _model = model;
        _seed = seed;
        _maxTokens = maxTokens;
        _client = new HttpClient { Timeout = timeout };
        if (cacheDirectory is not null)
        {
            Directory.CreateDirectory(cacheDirectory);
            var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{baseUrl}\n{model}\n{Instruction}\n{maxTokens}")))[..16];
            _cacheFile = Path.Combine(cacheDirectory, string.Create(CultureInfo.InvariantCulture, $"conversations-v2-{key}-seed{seed}.jsonl"));
            if (File.Exists(_cacheFile))
            {
                foreach (var line in File.ReadLines(_cacheFile))
                {
                    if (string.IsNullOrWhiteSpace(line))
                    {
                        continue;
                    }

                    var entry = JsonSerializer.Deserialize(line, ConversationJsonContext.Default.CachedTurn);
                    if (entry is { H: { } history })
                    {
                        _cache[(entry.C, entry.T, history)] = entry.Text;
                    }
                }
            }
        }
    }

    /// <summary>The cache file (null without a cache).</summary>
    public string? CacheFile => _cacheFile;

    /// <summary>Turns written by the generator in this run.</summary>
    public long Generated => Interlocked.Read(ref _generated);

    /// <summary>Turns taken from the cache.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    /// <summary>Generator calls that failed (their conversations ended there).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Why the first generator call that failed did, or null.</summary>
    public string? FirstFailure => Volatile.Read(ref _firstFailure);

    /// <summary>The opening message of conversation <paramref name="conversation"/>.</summary>
    public string Opener(long conversation)
    {
        var text = Openers[new Random(Sources.StableSeed.Mix(_seed, conversation)).Next(Openers.Length)];
        _turns.TryAdd((conversation, 0), text);
        return text;
    }

    /// <summary>
    /// The user's turn <paramref name="turn"/> (≥ 1) of conversation <paramref name="conversation"/>, from the cache or
    /// written by the generator from <paramref name="history"/> (role, text); null when the generator failed.
    /// </summary>
    public async ValueTask<string?> NextTurnAsync(long conversation, int turn, IReadOnlyList<(string Role, string Text)> history, CancellationToken cancellationToken)
    {
        var transcript = new StringBuilder();
        foreach (var (role, text) in history)
        {
            transcript.Append(role == "user" ? "User: " : "Assistant: ").AppendLine(text);
        }

        var historyKey = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(transcript.ToString())));
        if (_cache.TryGetValue((conversation, turn, historyKey), out var cached))
        {
            Interlocked.Increment(ref _cacheHits);
            _turns[(conversation, turn)] = cached;
            return cached;
        }

        var request = new ChatRequest(
            _model,
            [new ChatMessage("system", Instruction), new ChatMessage("user", transcript.ToString())],
            _maxTokens,
            0,
            Sources.StableSeed.Mix(_seed, conversation, turn));
        string? next;
        string? why = null;
        try
        {
            using var response = await _client.PostAsJsonAsync(_endpoint, request, ConversationJsonContext.Default.ChatRequest, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                var detail = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                why = string.Create(CultureInfo.InvariantCulture, $"--generate-with {_endpoint} answered {(int)response.StatusCode}: {(detail.Length > 200 ? detail[..200] + "…" : detail)}");
                next = null;
            }
            else
            {
                var body = await response.Content.ReadFromJsonAsync(ConversationJsonContext.Default.ChatResponse, cancellationToken).ConfigureAwait(false);
                next = body?.Choices is [{ Message.Content: { } content }, ..] ? content.Trim() : null;
                why = string.IsNullOrEmpty(next) ? $"--generate-with {_endpoint} answered without choices[0].message.content" : null;
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or JsonException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            why = $"--generate-with {_endpoint}: {HttpSender.Describe(ex)}";
            next = null;
        }

        if (string.IsNullOrEmpty(next))
        {
            Interlocked.Increment(ref _failures);
            Interlocked.CompareExchange(ref _firstFailure, why ?? "no answer", null);
            return null;
        }

        if (next.Length > MaxTurnChars)
        {
            next = next[..MaxTurnChars];
        }

        _turns[(conversation, turn)] = next;
        if (_cache.TryAdd((conversation, turn, historyKey), next))
        {
            Interlocked.Increment(ref _generated);
            if (_cacheFile is not null)
            {
                var line = JsonSerializer.Serialize(new CachedTurn(conversation, turn, historyKey, next), ConversationJsonContext.Default.CachedTurn);
                lock (_writeGate)
                {
                    File.AppendAllText(_cacheFile, line + "\n");
                }
            }
        }

        return next;
    }

    /// <summary>SHA-256 (hex) over every user turn of conversations 0 … <paramref name="conversations"/> − 1 in order: equal digests, equal conversations.</summary>
    public string Digest(long conversations, int turns)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (long c = 0; c < conversations; c++)
        {
            for (var t = 0; t < turns; t++)
            {
                if (_turns.TryGetValue((c, t), out var text))
                {
                    hash.AppendData(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{c}/{t}:{text}\n")));
                }
            }
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The user turns of one conversation (for the report).</summary>
    public IReadOnlyList<string> Sample(long conversation, int turns)
    {
        var list = new List<string>();
        for (var t = 0; t < turns && _turns.TryGetValue((conversation, t), out var text); t++)
        {
            list.Add(text);
        }

        return list;
    }

    /// <inheritdoc/>
    public void Dispose() => _client.Dispose();

    /// <summary>The body of a chat completion with the whole conversation so far, for the target.</summary>
    public static byte[] TargetBody(string model, IReadOnlyList<(string Role, string Text)> history, int maxTokens, bool stream)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model", model);
            w.WriteStartArray("messages");
            foreach (var (role, text) in history)
            {
                w.WriteStartObject();
                w.WriteString("role", role);
                w.WriteString("content", text);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteNumber("max_tokens", maxTokens);
            if (stream)
            {
                w.WriteBoolean("stream", true);
                w.WriteStartObject("stream_options");
                w.WriteBoolean("include_usage", true);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    internal sealed record ChatMessage([property: JsonPropertyName("role")] string Role, [property: JsonPropertyName("content")] string Content);

    internal sealed record ChatRequest(
        [property: JsonPropertyName("model")] string Model,
        [property: JsonPropertyName("messages")] IReadOnlyList<ChatMessage> Messages,
        [property: JsonPropertyName("max_tokens")] int MaxTokens,
        [property: JsonPropertyName("temperature")] double Temperature,
        [property: JsonPropertyName("seed")] int Seed);

    internal sealed record ChatChoice([property: JsonPropertyName("message")] ChatMessage? Message);

    internal sealed record ChatResponse([property: JsonPropertyName("choices")] IReadOnlyList<ChatChoice>? Choices);

    internal sealed record CachedTurn([property: JsonPropertyName("c")] long C, [property: JsonPropertyName("t")] int T, [property: JsonPropertyName("h")] string? H, [property: JsonPropertyName("text")] string Text);
}

/// <summary>Source-generated JSON of the conversation generator.</summary>
[JsonSerializable(typeof(ConversationGenerator.ChatRequest))]
[JsonSerializable(typeof(ConversationGenerator.ChatResponse))]
[JsonSerializable(typeof(ConversationGenerator.CachedTurn))]
internal sealed partial class ConversationJsonContext : JsonSerializerContext;
