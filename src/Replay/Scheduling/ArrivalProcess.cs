namespace Replay.Scheduling;

/// <summary>How arrivals are spread around the rate curve.</summary>
internal enum ArrivalKind
{
    /// <summary>Evenly: the i-th arrival at Λ⁻¹(i), as wrk2's constant-throughput mode.</summary>
    Uniform,

    /// <summary>A Poisson process: unit-rate exponential gaps mapped through Λ⁻¹ (the time-rescaling theorem).</summary>
    Poisson,

    /// <summary>A gamma renewal process with shape = burstiness (vLLM benchmark_serving's <c>--burstiness</c>): 1 is Poisson, below 1 burstier, above 1 smoother.</summary>
    Gamma,
}

/// <summary>
/// The unit-rate arrival process whose points are mapped through the rate profile: draws the gaps
/// ΔU between consecutive arrivals in "expected arrivals" units (mean 1).
/// </summary>
/// <remarks>
/// Poisson: ΔU = −ln(1 − U), U ~ Uniform[0,1) (inverse-transform sampling, Knuth TAOCP vol. 2 §3.4.1).
/// Gamma: ΔU ~ Gamma(k, θ = 1/k) with k = burstiness, so the mean gap is 1 and the squared coefficient of variation
/// is 1/k; this is vLLM's <c>np.random.gamma(shape=burstiness, scale=1/(rate·burstiness))</c> expressed per unit
/// rate. Sampled by Marsaglia and Tsang, "A simple method for generating gamma variables" (ACM TOMS 26(3), 2000),
/// with the k &lt; 1 boost Gamma(k) = Gamma(k+1)·U^(1/k) from the same paper.
/// </remarks>
internal sealed class ArrivalProcess
{
    private readonly Random _random;

    /// <summary>Creates a process.</summary>
    /// <param name="kind">Uniform, Poisson or gamma.</param>
    /// <param name="burstiness">Gamma shape k, &gt; 0 (ignored unless <paramref name="kind"/> is gamma).</param>
    /// <param name="seed">Seed of the draws, so a run can be repeated exactly.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="burstiness"/> is not positive for a gamma process.</exception>
    public ArrivalProcess(ArrivalKind kind, double burstiness, int seed)
    {
        if (kind == ArrivalKind.Gamma && !(burstiness > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(burstiness), burstiness, "Burstiness must be > 0.");
        }

        Kind = kind;
        Burstiness = burstiness;
        _random = new Random(seed);
    }

    /// <summary>The kind.</summary>
    public ArrivalKind Kind { get; }

    /// <summary>Gamma shape.</summary>
    public double Burstiness { get; }

    /// <summary>The next gap in unit-rate time (mean 1).</summary>
    public double NextGap() => Kind switch
    {
        ArrivalKind.Poisson => -Math.Log(1 - _random.NextDouble()),
        ArrivalKind.Gamma => SampleGamma(Burstiness, _random) / Burstiness,
        _ => 1,
    };

    /// <summary>A Gamma(k, 1) variate (Marsaglia–Tsang).</summary>
    internal static double SampleGamma(double k, Random random)
    {
        if (k < 1)
        {
            // Boost: Gamma(k) = Gamma(k + 1) · U^(1/k).
            var u = random.NextDouble();
            return SampleGamma(k + 1, random) * Math.Pow(u == 0 ? double.Epsilon : u, 1 / k);
        }

        var d = k - (1.0 / 3);
        var c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x, v;
            do
            {
                x = StandardNormal(random);
                v = 1 + (c * x);
            }
            while (v <= 0);

            v = v * v * v;
            var u = random.NextDouble();
            if (u < 1 - (0.0331 * x * x * x * x) || Math.Log(u) < (0.5 * x * x) + (d * (1 - v + Math.Log(v))))
            {
                return d * v;
            }
        }
    }

    /// <summary>A standard normal variate (Box–Muller).</summary>
    private static double StandardNormal(Random random)
    {
        var u1 = 1 - random.NextDouble();
        var u2 = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}

/// <summary>
/// Arrival times of an open-model run: U₀ = 0, Uᵢ = Uᵢ₋₁ + ΔU (from <see cref="ArrivalProcess"/>), tᵢ = Λ⁻¹(Uᵢ)
/// (from <see cref="RateProfile"/>). Times are absolute offsets from the run's start, computed ahead of the send.
/// </summary>
internal sealed class ArrivalSchedule
{
    private readonly RateProfile _profile;
    private readonly ArrivalProcess _process;
    private readonly long _limit;
    private double _u;
    private long _count;

    /// <summary>Creates a schedule.</summary>
    /// <param name="profile">The rate curve.</param>
    /// <param name="process">The arrival process.</param>
    /// <param name="limit">Most arrivals to produce (<c>--limit</c>); <see cref="long.MaxValue"/> for no limit.</param>
    public ArrivalSchedule(RateProfile profile, ArrivalProcess process, long limit)
    {
        _profile = profile;
        _process = process;
        _limit = limit;
    }

    /// <summary>The next arrival's offset in seconds from the start; false when the profile (or the limit) is over.</summary>
    public bool TryNext(out double offsetSeconds)
    {
        offsetSeconds = 0;
        if (_count >= _limit)
        {
            return false;
        }

        if (_count > 0 || _process.Kind != ArrivalKind.Uniform)
        {
            _u += _process.NextGap();
        }

        var t = _profile.InverseCumulative(_u);
        if (!(t < _profile.Duration))
        {
            return false;
        }

        _count++;
        offsetSeconds = t;
        return true;
    }
}
