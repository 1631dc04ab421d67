// cosmoslease infrastructure: a Cosmos DB account that holds the leases, and one Function App per region that
// runs the lease handler.
//
// Scope: resource group. `cosmoslease setup` creates the group (tagged with the environment name) and deploys
// this file into it, so `teardown` can remove exactly what setup made. Deploying it needs Contributor on the
// group, and, because it creates role assignments (Microsoft.Authorization/roleAssignments/write), Owner, User
// Access Administrator or Role Based Access Control Administrator there too; with deployFunctions=false it
// creates none of those, and Contributor is enough.
//
// This file has not been compiled by the test suite (no Bicep compiler can be installed where it was written).
// It was checked against the resource schemas (Azure/bicep-types-az) and Microsoft's Flex Consumption samples,
// and static tests (internal/cli/template_test.go) check the points that would fail a first real deployment.
// lease-container.json must sit beside it: loadJsonContent reads it when the template is built.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Name of the environment, such as dev or prod; part of every resource name and of the tags.')
param environmentName string

@description('Primary region: the Cosmos DB write region, and the first Function App.')
param location string = resourceGroup().location

@description('Further regions, in failover order: Cosmos DB read regions and one more Function App each.')
param regions array = []

@description('Witness regions: Cosmos DB read regions with no Function App, last in failover priority. With Strong consistency Cosmos DB needs a majority of its regions to accept a write, so with two regions losing either stops every lease write; a third keeps writes available, for one more region of RU/s. cosmoslease setup adds one for Strong with exactly two regions.')
param witnessRegions array = []

@description('Object id of a user or service principal to grant data access to the leases (Cosmos DB Built-in Data Contributor); empty for none.')
param principalId string = ''

@description('Deploy a Function App in every region; false deploys Cosmos DB only.')
param deployFunctions bool = true

@allowed([
  'Eventual'
  'ConsistentPrefix'
  'Session'
  'BoundedStaleness'
  'Strong'
])
@description('Default consistency. With several regions, Strong keeps a lease exclusive across a regional failover (a Session failover can lose the last writes, and then two instances may both hold the lease), at the cost of cross-region write latency; cosmoslease setup chooses Strong where Azure allows it. Azure blocks Strong for regions more than 8,000 km (5,000 miles) apart unless support lifts the limit. With one region, Session is enough.')
param consistencyLevel string = 'Session'

@description('Allow key (connection string) access for development. Off by default: only Microsoft Entra ID identities with a data role reach the data.')
param allowLocalAuth bool = false

@minValue(400)
@description('Provisioned throughput of the lease container, in RU/s.')
param throughput int = 400

@description('Serverless capacity mode. Serverless accounts cannot span regions: cosmoslease setup refuses the combination, and Azure rejects it.')
param serverless bool = false

@description('Database that holds the lease container.')
param databaseName string = 'DistributedLeasing'

@description('Container that holds the lease documents, partitioned on /leaseKey.')
param containerName string = 'Leases'

@description('NCRONTAB schedule of the LeaseTimer function (app setting LeaseTimerSchedule).')
param leaseTimerSchedule string = '0 */1 * * * *'

@description('Lease key the Function Apps contend for (app setting LeaseTimerLeaseKey).')
param leaseTimerLeaseKey string = 'timer-singleton'

@minValue(0)
@description('Always-ready instances of the LeaseTimer function in every Function App (Flex Consumption bills them while idle). 0 lets an app scale to zero between ticks.')
param alwaysReady int = 0

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'cosmoslease-env': environmentName
}
// The regions in order of preference: the primary region, then the others in failover order. Every app gets
// them as LeaseTimerPreferredRegions, and cosmoslease deploy deploys the most preferred region last.
var allRegions = concat([location], regions)
// The account's regions: the witness regions come last in failover priority and get no Function App.
var cosmosRegions = concat(allRegions, witnessRegions)
var functionRegions = deployFunctions ? allRegions : []
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002' // Cosmos DB Built-in Data Contributor
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner: deployment package, timer schedule monitor and locks
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor: host queues
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor: host tables
]
var storageRoleCount = length(storageRoles)
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // telemetry to Application Insights over Entra ID

// BoundedStaleness needs both bounds; these are the minimums Azure accepts for an account with several regions.
var consistencyPolicy = consistencyLevel == 'BoundedStaleness' ? {
  defaultConsistencyLevel: consistencyLevel
  maxStalenessPrefix: 100000
  maxIntervalInSeconds: 300
} : {
  defaultConsistencyLevel: consistencyLevel
}

// The lease container's default TTL and indexing policy, shared with `cosmoslease setup --emulator` (which embeds
// the same file), so both make the same container. The partition key path is indexed too: with the exclude-all
// strategy it is not indexed unless included.
var leaseContainer = loadJsonContent('lease-container.json')
var partitionKeyPath = '/leaseKey'

// ---------------------------------------------------------------------------------------------------------
// Cosmos DB: one write region plus read regions. Multiple write locations stay off: an ETag check in one
// write region does not stop a write in another, so two holders would become possible.
// ---------------------------------------------------------------------------------------------------------
resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: 'cosmos-${resourceToken}'
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [for (region, i) in cosmosRegions: {
      locationName: region
      failoverPriority: i
      isZoneRedundant: false
    }]
    enableAutomaticFailover: true
    enableMultipleWriteLocations: false
    consistencyPolicy: consistencyPolicy
    disableLocalAuth: !allowLocalAuth
    minimalTlsVersion: 'Tls12'
    capabilities: serverless ? [
      {
        name: 'EnableServerless'
      }
    ] : []
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: cosmos
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

// defaultTtl -1: time-to-live is on, but only items that carry their own ttl expire (run records). Lease documents
// carry none, so they never expire and their epoch never resets. The indexing policy indexes only the paths the
// queries filter or sort on (docs/provisioning.md, "The lease container"), so every renewal writes fewer index terms.
resource leases 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: containerName
  properties: {
    resource: {
      id: containerName
      partitionKey: {
        paths: [
          partitionKeyPath
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: leaseContainer.defaultTtl
      indexingPolicy: {
        indexingMode: leaseContainer.indexingPolicy.indexingMode
        automatic: leaseContainer.indexingPolicy.automatic
        includedPaths: concat(leaseContainer.indexingPolicy.includedPaths, [
          {
            path: '${partitionKeyPath}/?'
          }
        ])
        excludedPaths: leaseContainer.indexingPolicy.excludedPaths
      }
    }
    options: serverless ? {} : {
      throughput: throughput
    }
  }
}

// Cosmos DB data-plane role assignments. The account accepts one control-plane operation at a time, so they wait
// for the container and run one after another (the app loop after this one, with @batchSize(1)); run together
// with the container's creation or with each other, they fail with a conflict.
resource principalDataAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (!empty(principalId)) {
  parent: cosmos
  name: guid(cosmos.id, principalId, dataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    principalId: principalId
    scope: cosmos.id
  }
  dependsOn: [
    leases
  ]
}

// ---------------------------------------------------------------------------------------------------------
// One Function App per region: Flex Consumption, runtime custom, its own storage used through its identity.
// ---------------------------------------------------------------------------------------------------------
resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (deployFunctions) {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// Telemetry is accepted only from Entra ID identities (DisableLocalAuth): each app sends it with its managed
// identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), which holds Monitoring Metrics Publisher on its component.
resource insights 'Microsoft.Insights/components@2020-02-02' = [for (region, i) in functionRegions: {
  name: 'appi-${resourceToken}-${i}'
  location: region
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = [for (region, i) in functionRegions: {
  name: 'st${take(resourceToken, 13)}${i}'
  location: region
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}]

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = [for (region, i) in functionRegions: {
  parent: storage[i]
  name: 'default'
}]

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for (region, i) in functionRegions: {
  parent: blobServices[i]
  name: 'deployments'
}]

resource plans 'Microsoft.Web/serverfarms@2024-04-01' = [for (region, i) in functionRegions: {
  name: 'plan-${resourceToken}-${i}'
  location: region
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}]

resource apps 'Microsoft.Web/sites@2024-04-01' = [for (region, i) in functionRegions: {
  name: 'func-${resourceToken}-${i}'
  location: region
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plans[i].id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage[i].properties.primaryEndpoints.blob}deployments'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      // A timer function scales in its own group, named function:<name>; always-ready instances keep it from
      // scaling to zero (they are billed while idle).
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 512
        alwaysReady: alwaysReady > 0 ? [
          {
            name: 'function:LeaseTimer'
            instanceCount: alwaysReady
          }
        ] : []
      }
    }
    // Flex Consumption rejects the siteConfig properties that do not apply to it (error 51021), FTP state among
    // them; minimum TLS version applies.
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage[i].name
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: insights[i].properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD'
        }
        {
          name: 'CosmosLeasing__AccountEndpoint'
          value: cosmos.properties.documentEndpoint
        }
        {
          name: 'CosmosLeasing__DatabaseName'
          value: databaseName
        }
        {
          name: 'CosmosLeasing__ContainerName'
          value: containerName
        }
        {
          name: 'LeaseTimerSchedule'
          value: leaseTimerSchedule
        }
        {
          name: 'LeaseTimerLeaseKey'
          value: leaseTimerLeaseKey
        }
        {
          name: 'LeaseTimerRegion'
          value: region
        }
        {
          name: 'LeaseTimerPreferredRegions'
          value: join(allRegions, ',')
        }
      ]
    }
  }
  dependsOn: [
    deployments[i]
  ]
}]

@batchSize(1)
resource appDataAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = [for (region, i) in functionRegions: {
  parent: cosmos
  name: guid(cosmos.id, apps[i].id, dataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    principalId: apps[i].identity.principalId
    scope: cosmos.id
  }
  dependsOn: [
    leases
    principalDataAccess
  ]
}]

// One assignment per (app, storage role): entry k is app k / storageRoleCount, role k % storageRoleCount. A plain
// index range keeps every name and scope computable when the deployment starts, which a reference() inside
// flatten(map(lambda)) does not.
resource appStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for k in range(0, length(functionRegions) * storageRoleCount): {
  scope: storage[k / storageRoleCount]
  name: guid(storage[k / storageRoleCount].id, apps[k / storageRoleCount].id, storageRoles[k % storageRoleCount])
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageRoles[k % storageRoleCount])
    principalId: apps[k / storageRoleCount].identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

resource appInsightsAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (region, i) in functionRegions: {
  scope: insights[i]
  name: guid(insights[i].id, apps[i].id, monitoringMetricsPublisherRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: apps[i].identity.principalId
    principalType: 'ServicePrincipal'
  }
}]

// Outputs the CLI reads (cosmoslease setup writes appsettings.Local.json from them).
output resourceGroupName string = resourceGroup().name
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output cosmosAccountName string = cosmos.name
output databaseName string = databaseName
output containerName string = containerName
output functionAppNames array = [for (region, i) in functionRegions: apps[i].name]
output functionAppRegions array = functionRegions
