using Grpc.Core;
using Inference.V1;
using ModelSim.Engine;

namespace ModelSim.Api;

/// <summary>
/// gRPC <c>inference.v1.Generation</c> on the gRPC listener (HTTP/2 cleartext). Refusals map to gRPC status codes:
/// queue full → <c>RESOURCE_EXHAUSTED</c>, collapse → <c>INTERNAL</c> (HTTP 500's gRPC equivalent), shutdown →
/// <c>UNAVAILABLE</c>, bad input → <c>INVALID_ARGUMENT</c>. Cancelling the call frees the slot at once.
/// </summary>
/// <remarks>
/// proto3 cannot tell a missing <c>max_tokens</c> from 0, so 0 means <c>Sim:DefaultMaxTokens</c>; negative or above
/// <c>Sim:MaxTokensLimit</c> is <c>INVALID_ARGUMENT</c>. <c>session_id</c> is accepted and ignored. An empty <c>model</c>
/// means <c>Sim:Model</c>; another name is <c>NOT_FOUND</c> (unless <c>Sim:AcceptAnyModel</c>).
/// </remarks>
internal sealed class GenerationService(GenerationEngine engine) : Generation.GenerationBase
{
    private readonly SimOptions _options = engine.Options;

    /// <summary>Generates exactly <c>max_tokens</c> tokens and answers once.</summary>
    public override async Task<GenerateReply> Generate(GenerateRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        var sequence = Admit(request, streaming: false);
        SequenceOutcome outcome;
        using (context.CancellationToken.UnsafeRegister(static state => ((Sequence)state!).Cancel(), sequence))
        {
            outcome = await sequence.Completion.ConfigureAwait(false);
        }

        ThrowUnlessCompleted(outcome);
        return new GenerateReply { Text = TextGenerator.Text(sequence.TextKey, sequence.MaxTokens), Tokens = sequence.MaxTokens };
    }

    /// <summary>Generates exactly <c>max_tokens</c> tokens, one <see cref="TokenChunk"/> (index 0..n-1) per token as it is produced.</summary>
    public override async Task GenerateStream(GenerateRequest request, IServerStreamWriter<TokenChunk> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(responseStream);
        ArgumentNullException.ThrowIfNull(context);
        var sequence = Admit(request, streaming: true);
        var cancellationToken = context.CancellationToken;
        using var registration = cancellationToken.UnsafeRegister(static state => ((Sequence)state!).Cancel(), sequence);

        // One message instance per call: WriteAsync serialises it before completing, so it is reused for every token.
        var chunk = new TokenChunk();
        var reader = sequence.Tokens;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (reader.TryRead(out var index))
                {
                    chunk.Text = TextGenerator.Word(sequence.TextKey, index);
                    chunk.Index = index;
                    await responseStream.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or IOException)
        {
            // The client cancelled or went away mid-stream: free the slot; the call is over either way.
            sequence.Cancel();
            throw new RpcException(new Status(StatusCode.Cancelled, "The client cancelled the call."));
        }

        ThrowUnlessCompleted(await sequence.Completion.ConfigureAwait(false));
    }

    private Sequence Admit(GenerateRequest request, bool streaming)
    {
        if (!RequestParsing.TryResolveModel(request.Model, _options, out _, out var notFound))
        {
            engine.CountBadRequest();
            throw new RpcException(new Status(StatusCode.NotFound, notFound.Message));
        }

        var maxTokens = request.MaxTokens == 0 ? _options.DefaultMaxTokens : request.MaxTokens;
        if (maxTokens < 1 || maxTokens > _options.MaxTokensLimit)
        {
            engine.CountBadRequest();
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"max_tokens must be between 1 and {_options.MaxTokensLimit}, or 0 for the default {_options.DefaultMaxTokens} (was {request.MaxTokens})."));
        }

        var generation = RequestParsing.MeasurePrompt(request.Prompt, RequestParsing.BlockTokens(_options)).ToRequest(maxTokens, _options.Seed);
        return engine.TryAdmit(generation, streaming, out var sequence) switch
        {
            AdmissionResult.Accepted => sequence!,
            AdmissionResult.QueueFull => throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"The server is overloaded: all {_options.Slots} slots are busy and the queue ({_options.Queue}) is full.")),
            AdmissionResult.Collapsed => throw Collapsed(),
            _ => throw ShuttingDown(),
        };
    }

    private static void ThrowUnlessCompleted(SequenceOutcome outcome)
    {
        switch (outcome)
        {
            case SequenceOutcome.Completed:
                return;
            case SequenceOutcome.Cancelled:
                throw new RpcException(new Status(StatusCode.Cancelled, "The client cancelled the call."));
            case SequenceOutcome.Failed:
                throw Collapsed();
            default:
                throw ShuttingDown();
        }
    }

    private static RpcException Collapsed() =>
        new(new Status(StatusCode.Internal, "The server has collapsed (simulated out-of-memory) and is restarting."));

    private static RpcException ShuttingDown() => new(new Status(StatusCode.Unavailable, "The server is shutting down."));
}
