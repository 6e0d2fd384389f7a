using Gateway.Hosting;

// The gateway process: `dotnet run --project src/Gateway [-- --config FILE] [--Key=Value ...]`, from the repository
// root so that appsettings.json there is read. Exit codes: 0 after a clean shutdown, 2 for bad configuration (one
// line per problem on stderr, each naming its key), 1 for any other failure at start-up.
return await GatewayProgram.RunAsync(args);
