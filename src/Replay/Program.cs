// Placeholder entry point until the replay issue lands: it says so and exits non-zero rather than pretending.
Console.Error.WriteLine("replay: not built yet (see the replay issue).");
return 2;
