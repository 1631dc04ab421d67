// cosmoslease infrastructure: a Cosmos DB account that holds the leases, and one Function App per region that
// runs the lease handler.
//
// Scope: resource group. `cosmoslease setup` creates the group (tagged with the environment name) and deploys
// this file into it, so `teardown` can remove exactly what setup made. A resource-group deployment needs only
// rights on that group, and the whole template stays one plain file, readable top to bottom.
//
// This file has not been compiled by the test suite (no Bicep compiler can be installed where it was written);
// a test checks that every parameter the CLI passes and every output it reads are declared here.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Name of the environment, such as dev or prod; part of every resource name and of the tags.')
param environmentName string

@description('Primary region: the Cosmos DB write region, and the first Function App.')
param location string = resourceGroup().location

@description('Further regions, in failover order: Cosmos DB read regions and one more Function App each.')
param regions array = []

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
@description('Default consistency. Session is enough for the lease protocol in one write region; Strong also keeps the fencing epoch from going back after a regional failover, at the cost of write latency across regions.')
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

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  'cosmoslease-env': environmentName
}
var allRegions = concat([location], regions)
var functionRegions = deployFunctions ? allRegions : []
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002' // Cosmos DB Built-in Data Contributor
var storageRoles = [
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner: deployment package, timer schedule monitor and locks
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor: host queues
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor: host tables
]

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
    locations: [for (region, i) in allRegions: {
      locationName: region
      failoverPriority: i
      isZoneRedundant: false
    }]
    enableAutomaticFailover: true
    enableMultipleWriteLocations: false
    consistencyPolicy: {
      defaultConsistencyLevel: consistencyLevel
    }
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

// No defaultTtl: a time-to-live could delete a lease document and reset its epoch.
resource leases 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: containerName
  properties: {
    resource: {
      id: containerName
      partitionKey: {
        paths: [
          '/leaseKey'
        ]
        kind: 'Hash'
        version: 2
      }
    }
    options: serverless ? {} : {
      throughput: throughput
    }
  }
}

resource principalDataAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = if (!empty(principalId)) {
  parent: cosmos
  name: guid(cosmos.id, principalId, dataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    principalId: principalId
    scope: cosmos.id
  }
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

resource insights 'Microsoft.Insights/components@2020-02-02' = [for (region, i) in functionRegions: {
  name: 'appi-${resourceToken}-${i}'
  location: region
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
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
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 512
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
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
      ]
    }
  }
  dependsOn: [
    deployments[i]
  ]
}]

resource appDataAccess 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = [for (region, i) in functionRegions: {
  parent: cosmos
  name: guid(cosmos.id, apps[i].id, dataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    principalId: apps[i].identity.principalId
    scope: cosmos.id
  }
}]

resource appStorageAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for pair in flatten(map(range(0, length(functionRegions)), i => map(storageRoles, role => {
  app: i
  role: role
}))): {
  scope: storage[pair.app]
  name: guid(storage[pair.app].id, apps[pair.app].id, pair.role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', pair.role)
    principalId: apps[pair.app].identity.principalId
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
